"""The command line: ``zhcurate run | report | inspect | export``.

Exit codes: 0 success (even when records were rejected or quarantined), 2 bad usage or invalid recipe,
1 an unexpected failure (the message names the stage).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from schemas.errors import ConfigError, ZhcurateError

EXPORT_CHOICES = ("alpaca", "sharegpt", "openai")  # pipeline.outputs.export.EXPORT_FORMATS, without importing pyarrow
FILES_LISTED = 20


def _add_run(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run a recipe (or the default recipe) over input files")
    run.add_argument(
        "recipe", nargs="?", help="recipe YAML; without it (or without 'stages:' in it) the default stages run"
    )
    run.add_argument(
        "--input",
        action="append",
        default=None,
        metavar="PATH",
        help="input file, directory or glob (repeatable); overrides the recipe's input",
    )
    run.add_argument("--output", metavar="DIR", help="output directory; overrides the recipe's output")
    run.add_argument(
        "--fields",
        metavar="CANONICAL=KEY,...",
        help="map your keys to the canonical fields, e.g. instruction=question,output=std_answer; a KEY may be a "
        "dotted path (output=instances.0.output); overrides the recipe's fields: (default: the layout is detected)",
    )
    run.add_argument(
        "--format",
        choices=("auto", "alpaca", "sharegpt", "openai"),
        help="the input format (default: the recipe's format:, else auto = detected per file)",
    )
    run.add_argument(
        "--force",
        action="store_true",
        help="replace the outputs of a different run in the output directory (without it, that is an error)",
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help="reuse finished stages whose inputs and parameters are unchanged",
    )
    run.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this machine (a process pool with --workers N); ray: Ray Data, a local Ray or --address",
    )
    run.add_argument("--address", metavar="HOST:PORT", help="Ray cluster address, or 'auto' (with --engine ray)")
    run.add_argument(
        "--workers", type=int, default=1, help="worker processes (local engine); Ray actors per stage (ray engine)"
    )
    run.add_argument("--quiet", action="store_true", help="no progress bars or status lines (the summary stays)")
    run.set_defaults(handler=_run)


def _add_report(sub: argparse._SubParsersAction) -> None:
    rep = sub.add_parser("report", help="print the summary of a finished run (funnel, top reasons, balance)")
    rep.add_argument("dir", help="the output directory of a finished run")
    rep.add_argument("--html", action="store_true", help="re-render report.html from report.json")
    rep.add_argument("--top", type=int, default=15, help="how many reasons to list (default 15)")
    rep.set_defaults(handler=_report)


def _add_inspect(sub: argparse._SubParsersAction) -> None:
    ins = sub.add_parser("inspect", help="show records dropped for a reason (duplicates with their kept twin)")
    ins.add_argument("dir", help="the output directory of a finished run")
    what = ins.add_mutually_exclusive_group(required=True)
    what.add_argument("--reason", metavar="CODE", help="a reason code, or STAGE/CODE")
    what.add_argument(
        "--quarantine", action="store_true", help="show quarantine entries (file, line, error, raw text) instead"
    )
    ins.add_argument("--source", metavar="FILE", help="with --quarantine: only the entries of this input file")
    ins.add_argument("--limit", type=int, default=10, metavar="N", help="how many records (default 10)")
    ins.add_argument("--json", action="store_true", help="print JSON lines instead of tables")
    ins.set_defaults(handler=_inspect)


def _add_export(sub: argparse._SubParsersAction) -> None:
    exp = sub.add_parser("export", help="write the cleaned records for LLaMA-Factory, axolotl or OpenAI")
    exp.add_argument("dir", help="the output directory of a finished run")
    exp.add_argument(
        "--format",
        required=True,
        choices=EXPORT_CHOICES,
        dest="fmt",
        help="alpaca (instruction/input/output/system/history), sharegpt (conversations from/value) or openai "
        "(messages role/content)",
    )
    exp.add_argument("--to", required=True, metavar="FILE.jsonl", help="the JSONL file to write")
    exp.add_argument(
        "--dataset-info",
        metavar="PATH",
        help="the LLaMA-Factory dataset_info.json to add the entry to (default: beside FILE); 'none' to skip",
    )
    exp.add_argument("--name", help="the dataset's name in dataset_info.json (default: FILE's stem)")
    exp.set_defaults(handler=_export)


# Tools whose own argument parser takes the rest of the command line: name -> (module, help).
TOOLS = {
    "train-safety": ("pipeline.tools.train_safety", "retrain the models of the safety stage (needs --out)"),
    "train-embedder": ("pipeline.tools.train_embedder", "rebuild the built-in Chinese sentence-embedding model"),
    "calibrate": (
        "pipeline.tools.calibrate",
        "measure precision/recall of semantic-dedup thresholds on labelled pairs",
    ),
}


def _add_tools(sub: argparse._SubParsersAction) -> None:
    for name, (module, text) in TOOLS.items():
        tool = sub.add_parser(name, help=text, add_help=False)
        tool.add_argument("args", nargs=argparse.REMAINDER, help=f"arguments of {module} (--help for them)")
        tool.set_defaults(handler=_tool, tool_module=module, tool_name=name)


def _tool(args: argparse.Namespace) -> int:
    import importlib

    module = importlib.import_module(args.tool_module)
    sys.argv = [f"zhcurate {args.tool_name}", *args.args]
    code: int = module.main(list(args.args))
    return code


# Each command adds its sub-parser and sets ``handler``; add a command by adding a function here.
COMMANDS = (_add_run, _add_report, _add_inspect, _add_export, _add_tools)


def _parser() -> argparse.ArgumentParser:
    from pipeline import __version__

    p = argparse.ArgumentParser(prog="zhcurate", description="Clean, filter and deduplicate Chinese SFT data.")
    p.add_argument("--version", action="version", version=f"zhcurate {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return p


def _run(args: argparse.Namespace) -> int:
    if not args.quiet:  # at once: importing the stages (numpy, pyarrow, torch …) takes seconds
        print(
            f"zhcurate: loading the recipe {args.recipe or '(default)'} and the stages …", file=sys.stderr, flush=True
        )
    from pipeline.read.layouts import check_fields, parse_fields
    from pipeline.recipe import default_recipe, load_recipe
    from pipeline.runner import Runner, RunOptions

    recipe = load_recipe(args.recipe) if args.recipe else default_recipe()
    if args.input:
        recipe = replace(recipe, inputs=tuple(args.input))
    if args.output:
        recipe = replace(recipe, output=args.output)
    if args.fields:
        fields = parse_fields(args.fields)
        check_fields(fields, "--fields")
        recipe = replace(recipe, fields=fields)
    if args.format:
        recipe = replace(recipe, format=args.format)
    if not recipe.inputs:
        raise ConfigError("no input: give --input PATH or 'input:' in the recipe")
    if not recipe.output:
        raise ConfigError("no output directory: give --output DIR or 'output:' in the recipe")
    if args.workers < 1:
        raise ConfigError(f"--workers must be 1 or more, got {args.workers}")
    if args.address and args.engine != "ray":
        raise ConfigError("--address is the Ray cluster's address: use it with --engine ray")
    opts = RunOptions(
        output=Path(recipe.output),
        resume=args.resume,
        workers=args.workers,
        engine_name=args.engine,
        progress=not args.quiet,
        force=args.force,
    )
    if args.engine == "ray":
        from pipeline.engines.ray_engine import RayEngine

        with RayEngine(workers=args.workers if args.workers > 1 else None, address=args.address) as engine:
            report = Runner(recipe, opts, engine=engine).run()
    else:
        report = Runner(recipe, opts).run()
    print_run_summary(report, recipe.output)
    return 0


def print_run_summary(report: dict[str, Any], output: str | None) -> None:
    """The end of a run on stderr: the counts, the steps that ran, each file's layout, and every warning."""
    from pipeline.report.run_warnings import format_warning

    c = report["counts"]
    err = sys.stderr
    print(
        f"zhcurate: {c['input']} records in -> {c['cleaned']} cleaned, {c['rejected']} rejected, "
        f"{c['quarantined']} quarantined ({report['seconds']:.1f}s). Outputs in {output}",
        file=err,
    )
    steps = report.get("steps_run") or []
    ran = " → ".join(steps)
    if len(steps) <= 2:
        ran += " (read only: the recipe lists no stages; leave out 'stages:' for the default recipe)"
    print(f"zhcurate: steps run: {ran}", file=err)
    inputs = report.get("inputs") or []
    for f in inputs[:FILES_LISTED]:
        print(
            f"zhcurate:   {f.get('path')}: {f.get('units', 0):,} records, layout {f.get('layout') or '—'}, "
            f"{f.get('encoding') or '?'}",
            file=err,
        )
    if len(inputs) > FILES_LISTED:
        print(f"zhcurate:   … and {len(inputs) - FILES_LISTED} more file(s) (report.json: inputs)", file=err)
    for w in report.get("warnings") or []:
        print(f"zhcurate: {format_warning(w)}", file=err)


def _report(args: argparse.Namespace) -> int:
    from rich.console import Console

    from pipeline.outputs.inspect_cmd import load_report, print_summary
    from pipeline.report.report import render_html

    report = load_report(Path(args.dir))
    if args.html:
        (Path(args.dir) / "report.html").write_text(render_html(report), encoding="utf-8")
    print_summary(report, Console(), top=args.top)
    return 0


def _inspect(args: argparse.Namespace) -> int:
    import json

    from rich.console import Console

    from pipeline.outputs.inspect_cmd import print_quarantine, print_records, quarantine_records, rejected_records

    if args.quarantine:
        entries = quarantine_records(Path(args.dir), args.source, args.limit)
        if args.json:
            for entry in entries:
                print(json.dumps(entry, ensure_ascii=False))
        else:
            print_quarantine(entries, Console())
        return 0
    if args.source:
        raise ConfigError("--source goes with --quarantine")
    rows = rejected_records(Path(args.dir), args.reason, args.limit)
    if args.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False, default=str))
    else:
        print_records(rows, Console())
    return 0


def _export(args: argparse.Namespace) -> int:
    import json

    from pipeline.outputs.export import export, write_dataset_info

    to = Path(args.to)
    result = export(Path(args.dir), args.fmt, to)
    name = args.name or to.stem
    entry = result.entry
    print(f"zhcurate: wrote {result.written} records to {to} ({args.fmt})", file=sys.stderr)
    dropped = sum(result.would_drop.values())
    if dropped:
        rules = ", ".join(f"{rule} {n} (first: line {result.first_bad[rule]})" for rule, n in result.would_drop.items())
        print(f"zhcurate: warning: LLaMA-Factory would drop or fail on {dropped} line(s): {rules}", file=sys.stderr)
    else:
        print("zhcurate: every line passes LLaMA-Factory's checks (roles, tags, columns)", file=sys.stderr)
    if args.dataset_info != "none":
        info = Path(args.dataset_info) if args.dataset_info else to.parent / "dataset_info.json"
        write_dataset_info(info, name, entry)
        print(f"zhcurate: LLaMA-Factory entry '{name}' written to {info}:", file=sys.stderr)
    print(json.dumps({name: entry}, ensure_ascii=False, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = _parser()
    if argv and argv[0] in TOOLS:  # the tool's own parser reads everything after its name, --help included
        module, _ = TOOLS[argv[0]]
        args = argparse.Namespace(handler=_tool, tool_module=module, tool_name=argv[0], args=argv[1:])
    else:
        args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
        return code
    except ZhcurateError as e:
        print(f"zhcurate: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("zhcurate: interrupted; run again with --resume to continue", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
