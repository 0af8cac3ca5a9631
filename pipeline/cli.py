"""The command line: ``zhcurate run | report | inspect | export``.

Exit codes: 0 success (even when records were rejected or quarantined), 2 bad usage or invalid recipe,
1 an unexpected failure (the message names the stage).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from pipeline.errors import ConfigError, ZhcurateError


def _add_run(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run a recipe (or the default recipe) over input files")
    run.add_argument("recipe", nargs="?", help="recipe YAML; without it the default recipe runs")
    run.add_argument(
        "--input",
        action="append",
        default=None,
        metavar="PATH",
        help="input file, directory or glob (repeatable); overrides the recipe's input",
    )
    run.add_argument("--output", metavar="DIR", help="output directory; overrides the recipe's output")
    run.add_argument(
        "--resume",
        action="store_true",
        help="reuse finished stages whose inputs and parameters are unchanged",
    )
    run.add_argument("--engine", choices=("local", "ray"), default="local")
    run.add_argument("--address", help="Ray cluster address (with --engine ray)")
    run.add_argument(
        "--workers", type=int, default=1, help="worker processes (local engine); Ray actors per stage (ray engine)"
    )
    run.add_argument("--quiet", action="store_true", help="no progress bars")
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
    ins.add_argument("--reason", required=True, metavar="CODE", help="a reason code, or STAGE/CODE")
    ins.add_argument("--limit", type=int, default=10, metavar="N", help="how many records (default 10)")
    ins.add_argument("--json", action="store_true", help="print JSON lines instead of tables")
    ins.set_defaults(handler=_inspect)


def _add_export(sub: argparse._SubParsersAction) -> None:
    from pipeline.export import EXPORT_FORMATS

    exp = sub.add_parser("export", help="write the cleaned records for LLaMA-Factory, axolotl or OpenAI")
    exp.add_argument("dir", help="the output directory of a finished run")
    exp.add_argument("--format", required=True, choices=EXPORT_FORMATS, dest="fmt")
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
    "train-embedder": ("pipeline.train_embedder", "rebuild the built-in Chinese sentence-embedding model"),
    "calibrate": ("pipeline.calibrate", "measure precision/recall of dedup_semantic thresholds on labelled pairs"),
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
    p = argparse.ArgumentParser(prog="zhcurate", description="Clean, filter and deduplicate Chinese SFT data.")
    sub = p.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return p


def _run(args: argparse.Namespace) -> int:
    from pipeline.recipe import default_recipe, load_recipe
    from pipeline.runner import Runner, RunOptions

    recipe = load_recipe(args.recipe) if args.recipe else default_recipe()
    if args.input:
        recipe = replace(recipe, inputs=tuple(args.input))
    if args.output:
        recipe = replace(recipe, output=args.output)
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
    )
    if args.engine == "ray":
        from pipeline.engine_ray import RayEngine

        with RayEngine(workers=args.workers if args.workers > 1 else None, address=args.address) as engine:
            report = Runner(recipe, opts, engine=engine).run()
    else:
        report = Runner(recipe, opts).run()
    c = report["counts"]
    print(
        f"zhcurate: {c['input']} records in -> {c['cleaned']} cleaned, {c['rejected']} rejected, "
        f"{c['quarantined']} quarantined ({report['seconds']:.1f}s). Outputs in {recipe.output}",
        file=sys.stderr,
    )
    return 0


def _report(args: argparse.Namespace) -> int:
    from rich.console import Console

    from pipeline.inspect_cmd import load_report, print_summary
    from pipeline.report import render_html

    report = load_report(Path(args.dir))
    if args.html:
        (Path(args.dir) / "report.html").write_text(render_html(report), encoding="utf-8")
    print_summary(report, Console(), top=args.top)
    return 0


def _inspect(args: argparse.Namespace) -> int:
    import json

    from rich.console import Console

    from pipeline.inspect_cmd import print_records, rejected_records

    rows = rejected_records(Path(args.dir), args.reason, args.limit)
    if args.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False, default=str))
    else:
        print_records(rows, Console())
    return 0


def _export(args: argparse.Namespace) -> int:
    import json

    from pipeline.export import dataset_info_entry, export, write_dataset_info

    to = Path(args.to)
    n = export(Path(args.dir), args.fmt, to)
    name = args.name or to.stem
    entry = dataset_info_entry(args.fmt, to.name)
    print(f"zhcurate: wrote {n} records to {to} ({args.fmt})", file=sys.stderr)
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
