"""``zhcurate inspect`` and ``zhcurate report``: what a finished run decided, in the terminal.

Both read only the run's ledger: report.json for the summary; rejected.parquet (filtered by reason, streamed)
for the dropped records, and cleaned.parquet / rejected.parquet by id for a duplicate's kept twin.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pipeline.report.html import matched_terms
from pipeline.report.report import lookup
from pipeline.report.run_warnings import format_warning
from schemas.errors import ConfigError

TEXT_FIELDS = ("system", "instruction", "input", "output")


def load_report(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "report.json"
    if not path.is_file():
        raise ConfigError(f"{path} not found: give the output directory of a finished `zhcurate run`")
    report: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return report


def _reasons_in(rejected: Path) -> list[str]:
    table = pq.read_table(rejected, columns=["stage", "reason"])
    pairs = {(s, r) for s, r in zip(table.column("stage").to_pylist(), table.column("reason").to_pylist())}
    return sorted(f"{s}/{r}" for s, r in pairs)


def rejected_records(run_dir: Path, reason: str, limit: int = 10) -> list[dict[str, Any]]:
    """The first ``limit`` records dropped for ``reason`` (a code, or ``stage/code``), in ledger order, with
    ``detail`` parsed and, for duplicates, ``twin``: the record named by ``detail.duplicate_of``."""
    rejected = run_dir / "rejected.parquet"
    if not rejected.is_file():
        raise ConfigError(f"{rejected} not found: give the output directory of a finished `zhcurate run`")
    if limit < 1:
        raise ConfigError(f"--limit must be 1 or more, got {limit}")
    stage, _, code = reason.rpartition("/")
    rows: list[dict[str, Any]] = []
    for batch in pq.ParquetFile(rejected).iter_batches(batch_size=4096):
        mask = pc.equal(batch.column("reason"), code)
        if stage:
            mask = pc.and_(mask, pc.equal(batch.column("stage"), stage))
        rows += batch.filter(mask).slice(0, limit - len(rows)).to_pylist()
        if len(rows) >= limit:
            break
    if not rows:
        known = _reasons_in(rejected)
        raise ConfigError(
            f"no record was dropped for reason '{reason}'. Reasons in this run: {', '.join(known) or '(none)'}"
        )
    for row in rows:
        try:
            row["detail"] = json.loads(row["detail"]) if row.get("detail") else {}
        except json.JSONDecodeError:
            row["detail"] = {"text": row["detail"]}
    twin_ids = [
        str(r["detail"]["duplicate_of"])
        for r in rows
        if isinstance(r["detail"], dict) and r["detail"].get("duplicate_of")
    ]
    if twin_ids:
        twins = lookup(run_dir, twin_ids)
        for row in rows:
            twin_id = row["detail"].get("duplicate_of") if isinstance(row["detail"], dict) else None
            if twin_id:
                row["twin"] = twins.get(str(twin_id), {"id": twin_id, "where": "not found"})
    return rows


def quarantine_records(run_dir: Path, source: str | None = None, limit: int = 10) -> list[dict[str, Any]]:
    """The first ``limit`` quarantine entries (of input file ``source``, given as in the run or by file name)."""
    path = run_dir / "quarantine.jsonl"
    if not path.is_file():
        raise ConfigError(f"{path} not found: give the output directory of a finished `zhcurate run`")
    if limit < 1:
        raise ConfigError(f"--limit must be 1 or more, got {limit}")
    rows: list[dict[str, Any]] = []
    sources: set[str] = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            entry = json.loads(line)
            src = str(entry.get("source"))
            sources.add(src)
            if source is None or source in (src, Path(src).name):
                rows.append(entry)
                if len(rows) >= limit:
                    break
    if source is not None and not rows:
        known = ", ".join(sorted(sources)) or "(none)"
        raise ConfigError(f"no quarantine entry from '{source}'. Files with quarantine entries: {known}")
    return rows


def print_quarantine(rows: list[dict[str, Any]], console: Console) -> None:
    """One row per entry: where it was, the error, the raw text."""
    if not rows:
        console.print("nothing was quarantined in this run")
        return
    table = Table(title="隔离 quarantine", title_justify="left", show_lines=True, expand=True)
    for name in ("source", "line", "error", "raw"):
        table.add_column(name, overflow="fold", no_wrap=name == "line")
    for r in rows:
        where = r.get("line") if r.get("line") is not None else f"row {r.get('row')}"
        error = Text(str(r.get("error")), style="yellow")
        table.add_row(str(r.get("source")), str(where), error, _cut(str(r.get("raw"))))
    console.print(table)


def _cut(text: str, width: int = 400) -> str:
    return text if len(text) <= width else text[:width] + "…"


def _cell(text: str, terms: list[str]) -> Text:
    cell = Text(_cut(text))
    cell.highlight_words(terms, style="black on yellow")
    return cell


def print_records(rows: list[dict[str, Any]], console: Console) -> None:
    """One table per record: its fields (matched terms highlighted), its detail, and its kept twin."""
    for row in rows:
        terms = matched_terms(row["detail"]) if isinstance(row["detail"], dict) else []
        title = f"{row['id']}  ·  {row['stage']}/{row['reason']}"
        twin = row.get("twin")
        table = Table(title=title, title_justify="left", show_lines=True, expand=True)
        table.add_column("field", style="bold", no_wrap=True)
        table.add_column("dropped 丢弃", overflow="fold")
        if twin is not None:
            table.add_column(f"kept twin 保留 ({twin.get('id')}, {twin.get('where', '?')})", overflow="fold")
        for f in TEXT_FIELDS:
            mine = row.get(f) or ""
            other = (twin or {}).get(f) or ""
            if not mine and not other and f in ("system", "input"):
                continue
            cells = [_cell(mine, terms)] + ([_cell(other, terms)] if twin is not None else [])
            table.add_row(f, *cells)
        turns = len(row.get("history") or [])
        if turns:
            table.add_row("history", Text(f"{turns} earlier turn(s)"), *([Text("")] if twin is not None else []))
        detail = json.dumps(row["detail"], ensure_ascii=False)
        table.add_row("detail", Text(detail, style="yellow"), *([Text("")] if twin is not None else []))
        console.print(table)


def print_summary(report: dict[str, Any], console: Console, top: int = 15) -> None:
    """The funnel, the top reasons and the balance."""
    c = report["counts"]
    funnel = Table(title="漏斗 funnel", title_justify="left")
    for name, justify in (
        ("step", "left"),
        ("in", "right"),
        ("kept", "right"),
        ("dropped", "right"),
        ("quarantined", "right"),
        ("seconds", "right"),
        ("rec/s", "right"),
    ):
        funnel.add_column(name, justify=justify)  # type: ignore[arg-type]
    for s in report["stages"]:
        rps = f"{s['records_per_s']:,.0f}" if s.get("records_per_s") else "—"
        name = s["stage"] + (" (resumed)" if s.get("reused") else "")
        funnel.add_row(
            name,
            f"{s['input']:,}",
            f"{s['kept']:,}",
            f"{s['dropped']:,}",
            f"{s['quarantined']:,}",
            f"{s['seconds']:.2f}",
            rps,
        )
    console.print(funnel)
    reasons = Table(title="主要原因 top reasons", title_justify="left")
    reasons.add_column("stage/reason")
    reasons.add_column("records", justify="right")
    reasons.add_column("of input", justify="right")
    for key, n in sorted(report["reasons"].items(), key=lambda kv: -kv[1])[:top]:
        reasons.add_row(key, f"{n:,}", f"{100 * n / max(1, c['input']):.1f}%")
    if report["reasons"]:
        console.print(reasons)
        where = next(iter(report.get("inspect", {}).values()), "zhcurate inspect DIR --reason CODE").split(" --")[0]
        console.print(Text(f"all records of a reason: {where} --reason STAGE/CODE --limit N", style="dim"))
    files = report.get("by_file") or []
    if len(files) > 1 or any(f["quarantined"] for f in files):
        per_file = Table(title="各文件 per input file", title_justify="left")
        for name in ("file", "layout", "in", "kept", "dropped", "quar.", "top reasons"):
            if name in ("file", "layout", "top reasons"):
                per_file.add_column(name, overflow="fold", ratio=2 if name == "top reasons" else 1)
            else:
                per_file.add_column(name, justify="right", no_wrap=True)
        for f in files[:top]:
            top3 = ", ".join(f"{k.split('/', 1)[-1]} {v:,}" for k, v in list(f["reasons"].items())[:3])
            per_file.add_row(
                Path(f["file"]).name,
                (f.get("layout") or "").split(" ")[0],
                f"{f['records']:,}",
                f"{f['cleaned']:,}",
                f"{f['rejected']:,}",
                f"{f['quarantined']:,}",
                top3,
            )
        console.print(per_file)
    for w in report.get("warnings") or []:
        console.print(Text(format_warning(w), style="bold yellow"))
    if report.get("inspect", {}).get("quarantine"):
        console.print(Text(f"quarantine entries: {report['inspect']['quarantine']}", style="dim"))
    ok = report["balance"]["ok"]
    line = (
        f"input {c['input']:,} = cleaned {c['cleaned']:,} + rejected {c['rejected']:,} + quarantined "
        f"{c['quarantined']:,}"
    )
    console.print(Text(("balance ok: " if ok else "balance BROKEN: ") + line, style="green" if ok else "bold red"))
