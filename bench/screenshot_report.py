"""Run the sample dataset and screenshot its report.html with headless Chromium (for the README).

    python bench/screenshot_report.py                      # default recipe over samples/raw -> docs/report.png
    python bench/screenshot_report.py --recipe R.yaml --run out/x --png docs/report.png --height 2400
    python bench/screenshot_report.py --run out/sample --no-run   # screenshot an existing run

Needs Debian's ``chromium`` (``apt-get install chromium``; ``fonts-noto-cjk`` for the Chinese glyphs). The page
loads nothing from the network; Chromium is started with its background networking off.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.pipeline.test_report import CHROMIUM_FLAGS  # noqa: E402  (the browser test's flags, one list)

FLAGS = [*CHROMIUM_FLAGS, "--hide-scrollbars"]


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 2000) -> None:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        raise SystemExit("chromium not found: apt-get install chromium fonts-noto-cjk")
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            exe,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--screenshot={png.resolve()}",
            f"--window-size={width},{height}",
            page.resolve().as_uri(),
        ]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if res.returncode != 0 or not png.is_file():
        raise SystemExit(f"chromium failed ({res.returncode}): {res.stderr[-2000:]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", help="recipe to run (default: the default recipe over samples/raw)")
    ap.add_argument(
        "--run", default="out/sample-report", help="the run's output directory (relative: to the repository root)"
    )
    ap.add_argument("--no-run", action="store_true", help="screenshot --run as it is")
    ap.add_argument("--png", default=str(ROOT / "docs" / "report.png"))
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=2000)
    args = ap.parse_args()
    if not args.no_run:
        import os

        from pipeline.cli import main as zhcurate

        os.chdir(ROOT)  # sources then read samples/raw/..., as in the README
        argv = ["run", *([args.recipe] if args.recipe else ["--input", "samples/raw"])]
        code = zhcurate([*argv, "--output", args.run, "--quiet", "--force"])
        if code:
            return code
    run_dir = Path(args.run) if Path(args.run).is_absolute() else ROOT / args.run
    screenshot(run_dir / "report.html", Path(args.png), args.width, args.height)
    print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
