"""Progress on stderr: tqdm bars on a terminal; plain, periodic lines (no ``\\r`` frames) in a log file or pipe."""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol, TextIO

PLAIN_EVERY_S = 10.0


class Progress(Protocol):
    total: int | None

    def update(self, n: int = 1) -> Any: ...

    def close(self) -> None: ...


class PlainProgress:
    """``desc: 5,000/20,000 records (25%), 3.1s`` every :data:`PLAIN_EVERY_S` seconds, and once at the end."""

    def __init__(self, desc: str, total: int | None, stream: TextIO, every_s: float = PLAIN_EVERY_S) -> None:
        self.desc, self.total, self.stream, self.every_s = desc, total, stream, every_s
        self.n = 0
        self.started = self.last = time.monotonic()
        self.closed = False

    def _line(self) -> str:
        of = f"/{self.total:,}" if self.total else ""
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        return f"zhcurate: {self.desc}: {self.n:,}{of} records{pct}, {time.monotonic() - self.started:.1f}s"

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            print(self._line(), file=self.stream, flush=True)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            print(self._line() + " done", file=self.stream, flush=True)


class NoProgress:
    total: int | None = None

    def update(self, n: int = 1) -> None:
        return None

    def close(self) -> None:
        return None


def progress(desc: str, total: int | None, enabled: bool, stream: TextIO | None = None) -> Progress:
    """A bar for ``desc``: tqdm when ``stream`` (stderr) is a terminal, plain lines when it is not."""
    stream = stream or sys.stderr
    if not enabled:
        return NoProgress()
    if not stream.isatty():
        return PlainProgress(desc, total, stream)
    from tqdm import tqdm

    bar: Progress = tqdm(total=total, desc=desc, unit="rec", file=stream, dynamic_ncols=True, leave=True)
    return bar


def status(message: str, enabled: bool = True) -> None:
    """One status line on stderr (what is being loaded or started), at once."""
    if enabled:
        print(f"zhcurate: {message}", file=sys.stderr, flush=True)
