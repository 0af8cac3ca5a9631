"""Commands that build zhcurate's shipped artefacts (training); not used by a run."""
