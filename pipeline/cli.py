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


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zhcurate", description="Clean, filter and deduplicate Chinese SFT data.")
    sub = p.add_subparsers(dest="command", required=True)
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
    run.add_argument("--workers", type=int, default=1, help="worker processes (local engine)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")

    rep = sub.add_parser("report", help="print the summary of a finished run")
    rep.add_argument("dir")
    rep.add_argument("--html", action="store_true", help="re-render report.html from report.json")
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
    if args.engine == "ray":
        raise ConfigError("--engine ray is not available yet in this version; use --engine local")
    opts = RunOptions(
        output=Path(recipe.output),
        resume=args.resume,
        workers=args.workers,
        engine_name=args.engine,
        progress=not args.quiet,
    )
    report = Runner(recipe, opts).run()
    c = report["counts"]
    print(
        f"zhcurate: {c['input']} records in -> {c['cleaned']} cleaned, {c['rejected']} rejected, "
        f"{c['quarantined']} quarantined ({report['seconds']:.1f}s). Outputs in {recipe.output}",
        file=sys.stderr,
    )
    return 0


def _report(args: argparse.Namespace) -> int:
    import json

    from pipeline.report import render_html

    path = Path(args.dir) / "report.json"
    if not path.is_file():
        raise ConfigError(f"{path} not found: give the output directory of a finished `zhcurate run`")
    report = json.loads(path.read_text(encoding="utf-8"))
    if args.html:
        (Path(args.dir) / "report.html").write_text(render_html(report), encoding="utf-8")
    c = report["counts"]
    print(
        f"input {c['input']} = cleaned {c['cleaned']} + rejected {c['rejected']} + quarantined "
        f"{c['quarantined']}  balance: {'ok' if report['balance']['ok'] else 'BROKEN'}"
    )
    for s in report["stages"]:
        print(
            f"  {s['stage']:<16} in {s['input']:>9}  kept {s['kept']:>9}  dropped {s['dropped']:>8}  "
            f"{s['seconds']:.2f}s"
        )
        for r, n in s["reasons"].items():
            print(f"      {r:<32} {n}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "report":
            return _report(args)
        parser.error(f"unknown command {args.command}")
    except ZhcurateError as e:
        print(f"zhcurate: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("zhcurate: interrupted; run again with --resume to continue", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
