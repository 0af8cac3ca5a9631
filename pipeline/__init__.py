"""Orchestration: recipe loading, the runner and its engines, the ledger, the report, the command line."""

__version__ = "0.2.0"
