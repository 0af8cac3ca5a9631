"""One module per stage. A stage knows nothing about engines, files or the command line."""
