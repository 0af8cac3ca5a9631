"""``safety``: drop records whose content is harmful, by category; keep the ones that teach a model to refuse.

Two detectors:

* **lexicon** (:mod:`stages.safety_lexicon`) — curated terms by category (``porn``, ``violence``, ``weapons``,
  ``drugs``, ``gambling``, ``fraud``, ``hate``, ``self_harm``, and ``political``, off by default), plus the
  user's own lists and allow-lists. A category fires on one side of a record (the request: instruction, input,
  user turns; the answer: output, assistant turns) when the weights of its distinct matched terms add up to its
  threshold (1.0 by default; built-in weak terms weigh 0.3–0.5, so one mention of ``大麻`` does not fire).
* **classifier** (:mod:`stages.safety_train`) — offensive / hateful language that no lexicon lists, scored on
  the output with the request as context: n-grams that merely echo the request do not count (``垃圾邮件``
  answering "classify as 垃圾邮件 or not" is a label, not an insult), and outputs shorter than
  ``classifier_min_chars`` are left to the lexicon. Its hits are ``harmful_hate``.

Decision, per record (``refusal_aware``):

1. The answer fires a category, or the classifier scores it at ``classifier_threshold`` or more: dropped,
   whatever the request (``harmful_<category>``). In a refusal, terms the refusal repeats from the request do
   not count against it, and the classifier is not asked (a refusal names what it refuses).
2. Else the request fires (lexicon, or the classifier for a refusal's request) and the output refuses or
   redirects to help (``抱歉，我不能…``, ``这是违法的…``, ``请联系心理援助热线…``): kept, ``safety_refusal`` = true.
3. Else the request fires and the output does not refuse: dropped (``drop_harmful_requests``), the field named.

Reasons: ``harmful_<category>``. Detail: ``detector`` (lexicon / classifier), ``field``, ``terms`` and
``score``/``threshold`` (lexicon), or ``score``/``threshold`` (classifier). Column: ``safety_refusal`` (bool).
Counters: ``hits.<category>`` (records where the category fired, refusals included), ``classifier_hits``,
``refusal_kept``.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field

from pipeline.errors import ConfigError
from stages.base import RecordStage, StageParams, StageResult, detail_json
from stages.safety_lexicon import BUILTIN_DIR, CATEGORIES, Category, Hit, Lexicon, compact, fold, read_terms
from stages.safety_train import DEFAULT_ARTIFACT, SafetyClassifier

# Refusals and safe redirections, looked for in the folded head of the output (NFKC: "，" is ",").
_REFUSAL = re.compile(
    r"(?:抱歉|对不起|很遗憾|不好意思|sorry)[^。.!?\n]{0,24}?"
    r"(?:不能|无法|不会|不可以|不便|拒绝|没法|帮不了|不提供|不支持|不应该)"
    r"|^[^。\n]{0,10}?(?:我|本助手)?(?:不能|无法|不会|拒绝|不可以)(?:为你|为您|帮你|帮您|帮助|协助|提供|回答|满足"
    r"|告诉|参与|支持|生成|编写|撰写|创作|教你|教您|给出|给你|给您)"
    r"|作为(?:一个|一名)?(?:ai|人工智能|语言模型|ai助手|智能助手|负责任的)[^。\n]{0,30}?(?:不能|无法|不会|不应)"
    r"|(?:这|此|该)(?:种|些|样的)?(?:行为|做法|内容|请求|要求|问题)?(?:是|属于|涉及|构成)(?:一种|一项)?"
    r"(?:严重的|明显的)?(?:违法|非法|犯罪|违反法律|不道德|不合法|违规)"
    r"|i(?:'m| am) sorry,? but|i can(?:not|'t) (?:help|assist|provide)|as an ai\b"
)
_REDIRECT = re.compile(
    r"(?:请|建议你|建议您|你可以|您可以|务必)(?:立即|尽快|及时)?(?:联系|拨打|寻求|咨询|求助|报警)[^。\n]{0,20}?"
    r"(?:心理|援助|热线|专业|医生|警方|报警|110|120|12355|12320|辅导|危机)"
    r"|心理援助热线|心理危机干预|危机干预热线|自杀干预|生命热线|希望24热线"
)
# "Sorry, but here is how": a refusal that then complies is not a refusal.
_PIVOT = re.compile(
    r"(?:但是|不过|然而|可是|但)[^。\n]{0,30}?(?:以下是|下面是|这里是|步骤如下|方法如下|具体方法|具体步骤|教程"
    r"|你可以这样|可以按照)"
)
_REFUSAL_HEAD = 200


class CategoryParams(StageParams):
    """One harmful-content category: on or off, and the lexicon score at which it fires."""

    enabled: bool = True
    threshold: float = Field(default=1.0, gt=0)


class LexiconFile(StageParams):
    """A user term list: ``word`` per line, or ``word<TAB|space>label`` where the label is a category code,
    a weight, or a tag mapped to a category by ``tags`` (houbb's ``0``..``4``: ``{"1": drugs, "2": porn}``).
    Lines without a label get ``category``; lines whose tag maps to no enabled category are skipped."""

    path: str
    category: Category | None = None
    tags: dict[str, Category] = Field(default_factory=dict)
    weight: float = Field(default=1.0, gt=0)


class SafetyParams(StageParams):
    porn: CategoryParams = Field(default_factory=CategoryParams)
    violence: CategoryParams = Field(default_factory=CategoryParams)
    weapons: CategoryParams = Field(default_factory=CategoryParams)
    drugs: CategoryParams = Field(default_factory=CategoryParams)
    gambling: CategoryParams = Field(default_factory=CategoryParams)
    fraud: CategoryParams = Field(default_factory=CategoryParams)
    hate: CategoryParams = Field(default_factory=CategoryParams)
    self_harm: CategoryParams = Field(default_factory=CategoryParams)
    political: CategoryParams = Field(default_factory=lambda: CategoryParams(enabled=False))
    builtin_lexicon: bool = True  # stages/data/safety_lexicon/<category>.txt
    builtin_allow: bool = True  # stages/data/safety_lexicon/allow.txt (鸦片战争, 乳腺癌, 杀毒软件, ...)
    lexicons: list[LexiconFile] = Field(default_factory=list)
    allow: list[str] = Field(default_factory=list)  # phrases that never count (hits inside them are ignored)
    allow_files: list[str] = Field(default_factory=list)  # one allowed phrase a line
    boundary_max_len: int = Field(default=3, ge=0)  # terms this short must sit on jieba word boundaries
    classifier: bool = True
    classifier_path: str | None = None  # an artifact from `zhcurate train-safety`; default: the shipped one
    classifier_threshold: float | None = Field(default=None, gt=0, lt=1)  # None: the artifact's tuned value
    classifier_min_chars: int = Field(default=4, ge=0)  # shorter outputs are judged by the lexicon only
    refusal_aware: bool = True
    drop_harmful_requests: bool = True

    def enabled(self) -> list[Category]:
        return [c for c in CATEGORIES if getattr(self, c).enabled]


class SafetyStage(RecordStage):
    """Harmful-content filter (lexicon + classifier) that keeps refusals; see the module docstring."""

    name = "safety"
    Params = SafetyParams
    added_columns = (("safety_refusal", pa.bool_()),)
    params: SafetyParams

    def __init__(self, params: StageParams | None = None) -> None:
        super().__init__(params)
        self._lexicon: Lexicon | None = None
        self._classifier: SafetyClassifier | None = None
        self._cut: Callable[[str], list[str]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Loaded lexicon, model and segmenter stay in their process; a copy loads its own in setup().
        return {"params": self.params}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["params"])  # type: ignore[misc]

    # --- lifecycle -----------------------------------------------------------------------------------------
    def _artifact(self) -> Path:
        return Path(self.params.classifier_path) if self.params.classifier_path else DEFAULT_ARTIFACT

    def check(self) -> None:
        for f in [*(x.path for x in self.params.lexicons), *self.params.allow_files]:
            if not Path(f).is_file():
                raise ConfigError(f"safety: lexicon file '{f}' does not exist (lexicons[].path / allow_files)")
        if self.params.classifier and not self._artifact().is_file():
            raise ConfigError(
                f"safety: classifier artifact '{self._artifact()}' not found; train one with "
                "`zhcurate train-safety` or set `classifier: false`"
            )

    def setup(self) -> None:
        if self._lexicon is not None:
            return
        p = self.params
        enabled = set(p.enabled())
        lex = Lexicon(boundary_max_len=p.boundary_max_len)
        if p.builtin_lexicon:
            for cat in enabled:
                for term, c, w in read_terms(BUILTIN_DIR / f"{cat}.txt", category=cat):
                    lex.add(term, c, w)
        if p.builtin_allow:
            for line in (BUILTIN_DIR / "allow.txt").read_text(encoding="utf-8").splitlines():
                if line.strip() and not line.startswith("#"):
                    lex.add_allow(line.strip())
        for src in p.lexicons:
            for term, c, w in read_terms(Path(src.path), src.category, src.tags, src.weight):
                if c in enabled:
                    lex.add(term, c, w)
        for phrase in p.allow:
            lex.add_allow(phrase)
        for f in p.allow_files:
            for line in Path(f).read_text(encoding="utf-8-sig").splitlines():
                if line.strip() and not line.startswith("#"):
                    lex.add_allow(line.strip())
        lex.compile()
        if p.classifier:
            self._classifier = SafetyClassifier.load(self._artifact())
        from stages.segment import get_segmenter

        # Dictionary words only (no HMM guesses), so unknown slang is split into characters, not glued to
        # its neighbours into a new "word" that would hide it.
        self._cut = get_segmenter(hmm=False).cut
        self._lexicon = lex

    def fingerprint_params(self) -> dict[str, Any]:
        out = super().fingerprint_params()
        files = sorted(BUILTIN_DIR.glob("*.txt")) + [Path(x.path) for x in self.params.lexicons]
        files += [Path(f) for f in self.params.allow_files]
        if self.params.classifier:
            files.append(self._artifact())
        digest = hashlib.sha256()
        for f in files:
            digest.update(f.name.encode() + (f.read_bytes() if f.is_file() else b""))
        out["data_sha256"] = digest.hexdigest()[:16]
        return out

    @property
    def threshold(self) -> float:
        clf = self._classifier
        if self.params.classifier_threshold is not None:
            return self.params.classifier_threshold
        return clf.threshold if clf is not None else 1.0

    # --- decisions -----------------------------------------------------------------------------------------
    def process(self, batch: pa.Table) -> StageResult:
        self.setup()
        n = batch.num_rows
        # Folded once here (NFKC, lower case); the lexicon and the classifier fold again only what is not.
        cols = {f: [fold(t or "") for t in batch.column(f).to_pylist()] for f in ("instruction", "input", "output")}
        history = batch.column("history").to_pylist()
        outputs = [o or "" for o in cols["output"]]
        requests = [f"{i or ''}\n{x or ''}" for i, x in zip(cols["instruction"], cols["input"])]
        out_scores = self._classify(outputs, requests)
        reasons: list[str | None] = [None] * n
        details: list[str | None] = [None] * n
        refusal_flags = [False] * n
        counters: dict[str, int] = defaultdict(int)
        pending: list[int] = []  # refusals whose request the lexicon did not flag: ask the classifier
        for i in range(n):
            turns = history[i] or []
            req_fields = {"instruction": cols["instruction"][i], "input": cols["input"][i]}
            req_fields |= {f"history[{k}].user": t["user"] for k, t in enumerate(turns)}
            ans_fields = {"output": outputs[i]} | {
                f"history[{k}].assistant": t["assistant"] for k, t in enumerate(turns)
            }
            refusal = self.params.refusal_aware and _is_refusal(outputs[i])
            req_hits = self._fire(req_fields)
            # A refusal names what it refuses: its hits of the request's categories (or its terms) don't count.
            tolerated = self._request_topics(req_fields) if refusal else set()
            ans_hits = self._fire(ans_fields, tolerated)
            for cat in {c for c, *_ in (*req_hits, *ans_hits)}:
                counters[f"hits.{cat}"] += 1
            score = float(out_scores[i])
            if score >= self.threshold and not refusal:
                counters["classifier_hits"] += 1
            if ans_hits:
                reasons[i], details[i] = _lexicon_reason(ans_hits)
            elif score >= self.threshold and not refusal:
                reasons[i] = "harmful_hate"
                details[i] = detail_json(
                    detector="classifier", field="output", score=round(score, 4), threshold=self.threshold
                )
            elif req_hits and refusal:
                refusal_flags[i] = True
                counters["refusal_kept"] += 1
            elif req_hits and self.params.drop_harmful_requests:
                reasons[i], details[i] = _lexicon_reason(req_hits)
            elif refusal and self._classifier is not None:
                pending.append(i)
        if pending:
            req_scores = self._classify([requests[i] for i in pending], None)
            for i, s in zip(pending, req_scores):
                if s >= self.threshold:
                    refusal_flags[i] = True
                    counters["refusal_kept"] += 1
        table = batch.append_column("safety_refusal", pa.array(refusal_flags, type=pa.bool_()))
        return StageResult(table, reasons, details, dict(counters))

    def _classify(self, texts: Sequence[str], contexts: Sequence[str] | None) -> np.ndarray:
        if self._classifier is None or not texts:
            return np.zeros(len(texts))
        scores = self._classifier.scores(texts, contexts)
        short = np.array([len(compact(t)) < self.params.classifier_min_chars for t in texts])
        return np.where(short, 0.0, scores)

    def _matches(self, fields: dict[str, str]) -> list[tuple[Hit, str]]:
        assert self._lexicon is not None and self._cut is not None
        return [(hit, name) for name, text in fields.items() for hit in self._lexicon.match(text or "", self._cut)]

    def _request_topics(self, fields: dict[str, str]) -> set[str]:
        """The categories and terms the request's lexicon hits name (whatever their weight)."""
        return {x for hit, _ in self._matches(fields) for x in (hit.category, hit.term)}

    def _fire(
        self, fields: dict[str, str], tolerated: set[str] | frozenset[str] = frozenset()
    ) -> list[tuple[Category, float, float, str, list[str]]]:
        """Categories whose summed term weights over ``fields`` reach their threshold, strongest first:
        ``(category, score, threshold, fields, terms)``. Hits whose category or term is ``tolerated`` are
        skipped."""
        per_cat: dict[Category, dict[str, tuple[Hit, str]]] = defaultdict(dict)
        for hit, name in self._matches(fields):
            if hit.category not in tolerated and hit.term not in tolerated:
                per_cat[hit.category].setdefault(hit.term, (hit, name))
        fired = []
        for cat, hits in per_cat.items():
            score = sum(h.weight for h, _ in hits.values())
            threshold = getattr(self.params, cat).threshold
            if score >= threshold:
                where = ",".join(sorted({f for _, f in hits.values()}))
                fired.append((cat, round(score, 3), threshold, where, sorted(hits)))
        return sorted(fired, key=lambda x: -x[1] / x[2])


def _is_refusal(output: str) -> bool:
    """Whether an answer refuses or redirects to help (and does not then comply)."""
    if not output:
        return False
    text = fold(output)
    head = text[:_REFUSAL_HEAD]
    return bool(_REFUSAL.search(head) or _REDIRECT.search(text)) and not _PIVOT.search(text)


def _lexicon_reason(fired: list[tuple[Category, float, float, str, list[str]]]) -> tuple[str, str]:
    cat, score, threshold, where, terms = fired[0]
    others = {c: s for c, s, *_ in fired[1:]}
    return f"harmful_{cat}", detail_json(
        detector="lexicon", category=cat, field=where, terms=terms, score=score, threshold=threshold, also=others
    )
