"""report.html in headless Chromium with CJK fonts: the Chinese text renders as glyphs (not as boxes), and the
page is not blank. Skips where Chromium or a CJK font is absent (``apt-get install chromium fonts-noto-cjk``)."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from pipeline.report.html import CSS, FONT_STACK
from tests.pipeline.report.test_report import CHROMIUM_FLAGS
from tests.pipeline.report_fixtures import make_run

HAN = re.compile(r"[\u4e00-\u9fff]")


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("headless Chromium is not installed (apt-get install chromium fonts-noto-cjk)")
    fonts = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True, check=False)
    if not fonts.stdout.strip():
        pytest.skip("no CJK font is installed (apt-get install fonts-noto-cjk): Chinese would render as boxes")
    return exe


def _pixels(png: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and the unfiltered rows of an 8-bit RGB/RGBA PNG (what Chromium writes)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", data[:10])
            assert depth == 8 and color in (2, 6), (depth, color)
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += data
        pos += 12 + length
    raw, stride, rows = zlib.decompress(idat), width * channels, []
    prev = bytearray(stride)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = prev[i], prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, rows


def _dark_share(png: bytes) -> float:
    width, height, rows = _pixels(png)
    channels = len(rows[0]) // width
    dark = sum(1 for row in rows for i in range(0, len(row), channels) if row[i] + row[i + 1] + row[i + 2] < 600)
    return dark / (width * height)


def _shot(exe: str, page: Path, out: Path, size: str, profile: Path) -> bytes:
    res = subprocess.run(
        [
            exe,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--screenshot={out}",
            f"--window-size={size}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0 and out.is_file(), res.stderr[-2000:]
    return out.read_bytes()


def test_font_stack_names_system_and_cjk_fonts() -> None:
    families = [f.strip().strip('"') for f in FONT_STACK.split(",")]
    assert families[0] == "system-ui" and families[-1] == "sans-serif"
    for cjk in ("PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC", "Source Han Sans SC"):
        assert cjk in families
    assert FONT_STACK in CSS and "svg{font-family:inherit}" in CSS


def test_chinese_renders_in_headless_chromium(tmp_path: Path) -> None:
    exe = _chromium()
    run_dir = make_run(tmp_path / "run")
    page = (run_dir / "report.html").resolve()
    profile = tmp_path / "profile"
    dom = subprocess.run(
        [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    heading = re.search(r"<h1>(.*?)</h1>", dom.stdout, re.S)
    assert heading is not None and HAN.search(heading.group(1)), "the rendered heading has no Chinese text"
    # the heading alone, in the report's CSS: Chinese glyphs must differ from the boxes of characters no font has
    # (Private Use Area); where Chinese renders as boxes too, the two screenshots are the same
    shots = []
    for k, text in enumerate(("数据质量报告", "\U000f0001\U000f0002\U000f0003\U000f0004\U000f0005\U000f0006")):
        html = tmp_path / f"h{k}.html"
        html.write_text(f'<!doctype html><meta charset="utf-8"><style>{CSS}</style><h1>{text}</h1>', encoding="utf-8")
        shots.append(_pixels(_shot(exe, html.resolve(), tmp_path / f"h{k}.png", "600,160", profile))[2])
    assert shots[0] != shots[1], "Chinese renders as the same boxes as characters without a font"
    full = _shot(exe, page, tmp_path / "report.png", "1280,1600", profile)
    assert _dark_share(full) > 0.01, "the screenshot of report.html is blank"
