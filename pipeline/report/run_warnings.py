"""The warnings of a run: what a user must not miss, in the terminal summary, ``report.json`` and report.html.

Each warning is ``{"code", "file", "message", "fix"}``, built from the read step's per-file books
(:class:`~pipeline.read.sources.FileInfo`) and the files an input folder held that were not read:

* ``mostly_quarantined`` — a file with at least :data:`QUARANTINE_SHARE` of its records quarantined: the first
  error and the fix (usually a ``--fields`` mapping);
* ``salvaged`` — a JSON array with syntax errors, read element by element: how many elements were read;
* ``empty_file`` — a file with no records;
* ``skipped_files`` — files in an input folder that are not data (README.md, notes.txt, images, YAML …);
* ``file`` — anything else the reader noted about a file (e.g. an unknown extension).
"""

from __future__ import annotations

import re
from typing import Any

QUARANTINE_SHARE = 0.5
SKIPPED_LISTED = 20


def _fix_for(error: str, run_dir: str) -> str:
    flag = re.search(r"--fields \S+", error)
    if flag:
        return f"map your keys: zhcurate run ... {flag.group(0).rstrip(';,)')}"
    if "mapped from" in error:
        return "check the --fields / fields: path (a dotted path such as instances.0.output reaches into lists)"
    if "bytes" in error or "encoding" in error:
        return "save the file as UTF-8 (or GB18030), or check it is not a binary file"
    if "JSON" in error:
        return "fix the JSON at that line (one object per line for .jsonl, one array for .json)"
    return f"see every entry with: zhcurate inspect {run_dir} --quarantine"


def file_warnings(files: list[dict[str, Any]], skipped: list[str], run_dir: str) -> list[dict[str, Any]]:
    """The warnings of a run's inputs (``files``: the read step's ``FileInfo`` dicts)."""
    out: list[dict[str, Any]] = []
    for f in files:
        path, units = str(f.get("path")), int(f.get("units") or 0)
        quarantined = int(f.get("quarantined") or 0)
        notes = list(f.get("warnings") or [])
        if units == 0:
            out.append(
                {
                    "code": "empty_file",
                    "file": path,
                    "message": f"{path} is empty: no records were read from it",
                    "fix": "check that this is the file you meant to give",
                }
            )
            notes = [n for n in notes if not n.startswith("empty file")]
        elif quarantined >= QUARANTINE_SHARE * units:
            error = str(f.get("first_error") or "")
            out.append(
                {
                    "code": "mostly_quarantined",
                    "file": path,
                    "message": f"{path}: {quarantined:,} of {units:,} records ({100 * quarantined / units:.0f}%) "
                    f"quarantined; first error: {error}",
                    "fix": _fix_for(error, run_dir),
                }
            )
        broken, repairs = int(f.get("syntax_errors") or 0), int(f.get("repairs") or 0)
        if broken or repairs:
            out.append(
                {
                    "code": "salvaged",
                    "file": path,
                    "message": f"{path} is not valid JSON ("
                    + ", ".join(
                        ([f"{broken:,} broken element(s)"] if broken else [])
                        + ([f"{repairs:,} misplaced comma(s) or bracket(s)"] if repairs else [])
                    )
                    + f"); {int(f.get('salvaged') or 0):,} elements were salvaged one by one"
                    + (", the broken ones are in quarantine.jsonl" if broken else ""),
                    "fix": f"fix the file, or check the salvaged records: zhcurate inspect {run_dir} --quarantine",
                }
            )
        out.extend({"code": "file", "file": path, "message": f"{path}: {n}", "fix": ""} for n in notes)
    if skipped:
        shown = ", ".join(skipped[:SKIPPED_LISTED]) + (
            f" and {len(skipped) - SKIPPED_LISTED} more" if len(skipped) > SKIPPED_LISTED else ""
        )
        out.append(
            {
                "code": "skipped_files",
                "file": "",
                "message": f"{len(skipped)} file(s) in the input folder(s) skipped "
                f"(not .json/.jsonl/.csv/.tsv/.parquet): {shown}",
                "fix": "rename a data file to a known extension, or give it with --input FILE",
                "files": skipped,
            }
        )
    return out


def format_warning(w: dict[str, Any]) -> str:
    """One warning as a terminal line (and its fix on the next)."""
    fix = f"\n    fix: {w['fix']}" if w.get("fix") else ""
    return f"warning [{w['code']}]: {w['message']}{fix}"
