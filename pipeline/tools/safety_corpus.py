"""The training data of ``zhcurate train-safety`` (pipeline/tools/train_safety.py): the sources in zhcurate's
shared-data layout, the labels mapped to the stage's categories, and the cleaning of machine-made labels. The
module docstring of train_safety says what each head learns from."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stages.assets import DATA_DIR as ASSETS_DATA_DIR
from stages.safety.categories import Category

DATA_DIR = ASSETS_DATA_DIR
NEUTRAL_SENTENCES = DATA_DIR / "safety_neutral.txt"
BENIGN_REQUESTS = DATA_DIR / "safety_benign_requests.txt"
HARMFUL_REQUESTS = DATA_DIR / "safety_harmful_requests.txt"
# jade-v3-medium harmful_response records that safety/README.md found to be refusals or advice against.
JADE_MISLABELLED = frozenset({20, 39, 121, 185, 188, 195, 206, 278, 297, 356, 357, 493, 498})
_HAN = re.compile(r"[\u4e00-\u9fff]")

# Source labels -> categories. JADE 违规子类 / JailBench 二级领域 first, then the top class.
_SUB = {
    "贩卖毒品": "drugs",
    "非法持有武器": "weapons",
    "赌博或开设赌场": "gambling",
    "宣扬淫秽色情": "porn",
    "宣扬暴力、淫秽色情": "violence",
    "宣扬暴力": "violence",
    "故意伤害他人": "violence",
    "抢劫": "violence",
    "宣扬恐怖主义、极端主义": "violence",
    "危害公共安全": "violence",
    "诈骗": "fraud",
    "网络欺诈与犯罪": "fraud",
    "传播虚假有害信息": "misinformation",
    "侵害他人个人信息权益": "privacy",
    "侵害他人隐私权": "privacy",
    "非法获取私人信息": "privacy",
    "违反商业道德": "commercial",
    "内幕交易": "commercial",
    "侵害国家利益、侵害国家形象": "political",
    "侵害他人身心健康": "rights",
    "危害他人身心健康": "rights",
    "侵害他人名誉权": "rights",
    "侵害他人肖像权": "rights",
    "侵害他人财产权": "rights",
    "侵害他人其他合法权益": "rights",
    "侵害其他合法权益": "rights",
}
_TOP = {
    "歧视偏见": "discrimination",
    "歧视": "discrimination",
    "商业违法违规": "commercial",
    "无法满足特定服务类型的安全需求": "specialized",
    "侵害权益": "rights",
    "侵犯他人合法权益": "rights",
    "违法犯罪": "crime",
    "违反社会主义核心价值观": "crime",
}


def source_category(category: str, subcategory: str | None) -> Category:
    """The stage category of a JADE / JailBench label pair (``违法犯罪``/``贩卖毒品`` -> ``drugs``)."""
    sub = subcategory or ""
    if sub.endswith("歧视内容"):
        return "discrimination"
    if category in ("商业违法违规", "无法满足特定服务类型的安全需求"):
        return _TOP[category]  # type: ignore[return-value]
    return _SUB.get(sub) or _TOP.get(category) or "crime"  # type: ignore[return-value]


@dataclass
class Corpus:
    """Everything the heads train on, read from a shared-data folder."""

    harmful: list[str] = field(default_factory=list)  # must_refuse requests
    harmful_cat: list[str] = field(default_factory=list)
    harmful_group: list[str] = field(default_factory=list)  # "<set>/<subcategory>", for held-out splits
    benign: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)  # JADE safe_response
    complies: list[str] = field(default_factory=list)  # JADE harmful_response, cleaned
    pair_group: list[str] = field(default_factory=list)  # subcategory of each refusal then each comply
    helpful: list[str] = field(default_factory=list)  # Alpaca answers (complying with benign requests)
    cold: list[str] = field(default_factory=list)
    cold_y: list[int] = field(default_factory=list)
    clean: list[str] = field(default_factory=list)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_alpaca(path: Path) -> list[dict[str, Any]]:
    """An Alpaca JSON array; a trailing comma (one of the shared files has one) is tolerated."""
    text = path.read_text(encoding="utf-8")
    try:
        rows = json.loads(text)
    except json.JSONDecodeError:
        rows = json.loads(re.sub(r",\s*([\]}])", r"\1", text))
    return [r for r in rows if isinstance(r, dict)]


def read_lines(path: Path) -> list[str]:
    return [s for s in path.read_text(encoding="utf-8").splitlines() if s.strip() and not s.startswith("#")]


def read_clean(path: Path, column: int | None = None, limit: int | None = None) -> list[str]:
    """Mostly-Han fields of a TSV (all fields, or one column; of the first ``limit`` lines), converted to
    Simplified Chinese, deduplicated."""
    import opencc

    t2s = opencc.OpenCC("t2s")
    seen: dict[str, None] = {}
    for line in path.read_text(encoding="utf-8-sig").splitlines()[:limit]:
        cells = line.split("\t")
        for cell in cells if column is None else cells[column : column + 1]:
            cell = cell.strip()
            if len(_HAN.findall(cell)) >= max(2, len(cell) // 3):
                seen.setdefault(t2s.convert(cell))
    return list(seen)


def clean_jade(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """JADE ``harmful_response`` records whose label can be trusted (see the module docstring)."""
    from stages.safety.refusal import is_refusal

    out = []
    for r in rows:
        num = int(r["source"].rsplit("#", 1)[1])
        text = r["output"]
        if num in JADE_MISLABELLED or len(_HAN.findall(text)) < 12 or is_refusal(text[:60]):
            continue
        out.append(r)
    return out


def load(data: Path, limit: int | None = None) -> Corpus:
    """Read every source (the first ``limit`` records of each when given)."""

    def cut(xs: Sequence[Any]) -> list[Any]:
        return list(xs[:limit] if limit else xs)

    from stages.safety.refusal import is_refusal

    c = Corpus()
    for r in cut([r for r in read_jsonl(data / "safety/harmful_requests.jsonl") if r["kind"] == "must_refuse"]):
        c.harmful.append(r["instruction"])
        c.harmful_cat.append(source_category(r["category"], r["subcategory"]))
        c.harmful_group.append(f"{r['source'].split('#')[0]}/{r['subcategory']}")
    for line in read_lines(HARMFUL_REQUESTS):
        c.harmful.append(line)
        c.harmful_cat.append("crime")  # not used for the category head (see train)
        c.harmful_group.append("zhcurate/written")
    jade = read_jsonl(data / "safety/jade_train.jsonl")
    for r in cut([r for r in jade if r["label"] == "safe_response"]):
        c.refusals.append(r["output"])
        c.pair_group.append(r["subcategory"])
    for r in cut(clean_jade(r for r in jade if r["label"] == "harmful_response")):
        c.complies.append(r["output"])
        c.pair_group.append(r["subcategory"])
    for f in sorted((data / "alpaca_zh").glob("*.json")):
        if f.name.endswith("已完成.json"):
            continue  # the evaluation set
        rows = [r for r in read_alpaca(f) if _HAN.search(str(r.get("instruction", "")))]
        for r in cut(rows):
            c.benign.append(f"{r.get('instruction') or ''}\n{r.get('input') or ''}".strip())
            out = str(r.get("output") or "")
            if out and not is_refusal(out):
                c.helpful.append(out)
    for name in ("LCQMC/LCQMC.valid.data", "BQ/BQ.valid.data", "ATEC/ATEC.valid.data"):
        c.benign += read_clean(data / "paraphrase" / name, limit=limit)
    tatoeba = read_clean(data / "parallel/tatoeba_cmn_eng.txt", limit=limit)
    c.benign += tatoeba + read_lines(BENIGN_REQUESTS) + read_lines(NEUTRAL_SENTENCES)
    with (data / "cold/train.csv").open(encoding="utf-8-sig", newline="") as fh:
        for row in cut(list(csv.DictReader(fh))):
            c.cold.append(row["TEXT"])
            c.cold_y.append(int(row["label"]))
    c.clean = tatoeba + read_clean(data / "paraphrase/PAWSX/PAWSX.valid.data", limit=limit)
    c.clean += read_lines(NEUTRAL_SENTENCES)
    c.clean += c.helpful
    return c
