"""What every part of the tool shares: the canonical record and ledger schemas (``schemas.record``) and the error
types (``schemas.errors``). Importing the package imports nothing else, so ``schemas.errors`` stays cheap."""
