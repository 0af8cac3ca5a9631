"""Every error zhcurate raises on purpose, in one place.

    ZhcurateError                 base; the command line prints its message, no traceback
    ├── ConfigError               bad usage or invalid recipe -> exit code 2
    ├── InputError                an input file cannot be read at all (not a bad record: those are quarantined)
    ├── OutputError               the output directory cannot be written
    ├── BalanceError              input != cleaned + rejected + quarantined: a bug, never silence it
    └── StageError                a stage failed unexpectedly -> exit code 1, names the stage

Messages say what is wrong and what to do: the file, line or key, the allowed values, the fix.
"""

from __future__ import annotations


class ZhcurateError(Exception):
    exit_code = 1


class ConfigError(ZhcurateError):
    exit_code = 2


class InputError(ZhcurateError):
    exit_code = 1


class OutputError(ZhcurateError):
    exit_code = 1


class BalanceError(ZhcurateError):
    exit_code = 1


class StageError(ZhcurateError):
    exit_code = 1

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(f"stage '{stage}' failed: {message}")
        self.stage = stage
        self.message = message

    def __reduce__(self) -> tuple[type[StageError], tuple[str, str]]:  # raised on a worker, re-raised here
        return (StageError, (self.stage, self.message))
