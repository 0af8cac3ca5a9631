"""``safety``: judge what the answer does with its request, not which words it contains.

A record is a pair: the **request** (user turns of the history, instruction, input) and the **answer** (the
output; the lexicon also reads the history's assistant turns). Four small signals, each tested on its own:

* **request risk** (``request`` head of :mod:`stages.safety.model`, or the request's own lexicon hits): P(the
  user asks for harm), and the request's **category** (its lexicon hits when it has some, else the category head);
* **refusal / compliance**: the answer refuses or redirects to help (``refusal`` head, or the refusal phrases
  of :mod:`stages.safety.refusal`; a refusal that then complies, ``抱歉……不过，以下是步骤``, is not one), or it
  complies with harmful help (``harm`` head: instructions for a crime, a scam text — not an ordinary helpful answer);
* **toxicity** (``toxicity`` head, trained on COLD): the answer insults or attacks; only what the answer adds to
  its request counts (``垃圾邮件`` answering "classify as 垃圾邮件 or not" is a label, not an insult), and answers
  shorter than ``toxicity_min_chars`` are not scored;
* **answer lexicon** (:mod:`stages.safety.lexicon`): curated terms of unmistakable harmful content (``裸聊``,
  ``出售冰毒``) that the answer adds: terms it repeats from the request do not count (``出售冰毒是什么罪？`` answered
  with the law), and a refusal's hits of the request's categories do not count either.

Decision, in order: the answer lexicon fires -> dropped ``harmful_<category>``; the answer is toxic and not a
refusal -> dropped ``harmful_hate``; the answer is not a refusal and complies with a harmful request
(``pair = request_risk^(1/3) * harm^(2/3)`` at ``pair_threshold``; a request-lexicon hit counts as risk 1) ->
dropped ``harmful_<category>`` of the request; the request is harmful (request head at its threshold, or its
lexicon) and the answer refuses -> **kept**, ``safety_refusal``; anything else (a benign request, on any topic;
a flagged request answered with ordinary help) -> kept. A disabled category (``political`` by default) makes its
requests benign. Categories and their TC260-003 classes: :mod:`stages.safety.categories`.

Columns: ``safety_refusal`` (bool), ``safety_request_category`` (null when the request is not harmful),
``safety_score`` (0..1: ``max(pair * (1 - refusal), toxicity)``, 1.0 for an answer-lexicon hit; dropped
pairs score high, and a user may drop kept records above a stricter cut). ``detail`` of a drop: ``signal``
(``request+compliance`` / ``toxicity`` / ``answer_lexicon``), ``category``, ``tc260`` and each signal's score and
threshold. Counters: ``harmful_request.<category>``, ``refusal_kept.<category>``, ``signal.<signal>``.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field

from schemas.errors import ConfigError
from stages.base import RecordStage, StageParams, StageResult, detail_json
from stages.safety.categories import CATEGORIES, LEXICON_CATEGORIES, Category, tc260_of
from stages.safety.lexicon import BUILTIN_DIR, Hit, Lexicon, compact, fold, read_terms
from stages.safety.model import DEFAULT_ARTIFACT, SafetyModels, key_counts, ngram_keys, novel_keys
from stages.safety.refusal import is_refusal_of

PAIR_THRESHOLD = 0.342
"""Compliance with a harmful request: ``request_risk ** (1/3) * harm ** (2/3)`` at or above this (the weighted
geometric mean leans on the answer: a flagged request answered with ordinary help is kept). Chosen with
``bench/bench_safety_heldout.py --dump`` on held-out JADE folds and the clean Alpaca-zh set (see the README)."""
RISK_FLOOR = 0.05  # below this request risk (and no request lexicon hit) an answer is never judged as compliance


class CategoryParams(StageParams):
    """One category: on or off, and the summed weight of its lexicon terms at which the lexicon fires."""

    enabled: bool = True
    threshold: float = Field(default=1.0, gt=0)


def _off() -> CategoryParams:
    return CategoryParams(enabled=False)


class LexiconFile(StageParams):
    """A user term list: ``word`` per line, or ``word<TAB|space>label`` where the label is a category code,
    a weight, or a tag mapped to a category by ``tags`` (houbb's ``0``..``4``: ``{"1": drugs, "2": porn}``).
    Lines without a label get ``category``; lines whose tag maps to no enabled category are skipped."""

    path: str
    category: Category | None = None
    tags: dict[str, Category] = Field(default_factory=dict)
    weight: float = Field(default=1.0, gt=0)


class SafetyParams(StageParams):
    political: CategoryParams = Field(default_factory=_off)
    violence: CategoryParams = Field(default_factory=CategoryParams)
    porn: CategoryParams = Field(default_factory=CategoryParams)
    weapons: CategoryParams = Field(default_factory=CategoryParams)
    drugs: CategoryParams = Field(default_factory=CategoryParams)
    gambling: CategoryParams = Field(default_factory=CategoryParams)
    fraud: CategoryParams = Field(default_factory=CategoryParams)
    crime: CategoryParams = Field(default_factory=CategoryParams)
    misinformation: CategoryParams = Field(default_factory=CategoryParams)
    discrimination: CategoryParams = Field(default_factory=CategoryParams)
    hate: CategoryParams = Field(default_factory=CategoryParams)
    commercial: CategoryParams = Field(default_factory=CategoryParams)
    privacy: CategoryParams = Field(default_factory=CategoryParams)
    rights: CategoryParams = Field(default_factory=CategoryParams)
    self_harm: CategoryParams = Field(default_factory=CategoryParams)
    specialized: CategoryParams = Field(default_factory=CategoryParams)
    builtin_lexicon: bool = True  # stages/data/safety_lexicon/<category>.txt
    builtin_allow: bool = True  # stages/data/safety_lexicon/allow.txt (鸦片战争, 乳腺癌, 杀毒软件, ...)
    lexicons: list[LexiconFile] = Field(default_factory=list)
    allow: list[str] = Field(default_factory=list)  # phrases that never count (hits inside them are ignored)
    allow_files: list[str] = Field(default_factory=list)  # one allowed phrase a line
    boundary_max_len: int = Field(default=3, ge=0)  # terms this short must sit on jieba word boundaries
    models: bool = True  # the learned signals; false: lexicon only (on the request and on the answer)
    models_path: str | None = None  # an artefact from `zhcurate train-safety`; default: the shipped one
    request_threshold: float | None = Field(default=None, gt=0, lt=1)  # None: the artefact's tuned values
    refusal_threshold: float | None = Field(default=None, gt=0, lt=1)
    pair_threshold: float = Field(default=PAIR_THRESHOLD, gt=0, lt=1)  # on request_risk^(1/3) * harm^(2/3)
    toxicity_threshold: float | None = Field(default=None, gt=0, lt=1)
    toxicity_min_chars: int = Field(default=4, ge=0)
    drop_harmful_requests: bool = True  # false: a harmful request answered with compliance is kept (tagged)

    def enabled(self) -> list[Category]:
        return [c for c in CATEGORIES if getattr(self, c).enabled]


class SafetyStage(RecordStage):
    """Pair-level harmful-content filter that keeps refusals; see the module docstring."""

    name = "safety"
    Params = SafetyParams
    added_columns = (
        ("safety_refusal", pa.bool_()),
        ("safety_request_category", pa.string()),
        ("safety_score", pa.float64()),
    )
    params: SafetyParams
    resources = ("_lexicon", "_models", "_cut")  # loaded by setup() in each process

    def __init__(self, params: StageParams | None = None) -> None:
        super().__init__(params)
        self._lexicon: Lexicon | None = None
        self._models: SafetyModels | None = None
        self._cut: Callable[[str], list[str]] | None = None

    # --- lifecycle -----------------------------------------------------------------------------------------
    def _artifact(self) -> Path:
        return Path(self.params.models_path) if self.params.models_path else DEFAULT_ARTIFACT

    def check(self) -> None:
        for f in [*(x.path for x in self.params.lexicons), *self.params.allow_files]:
            if not Path(f).is_file():
                raise ConfigError(f"safety: lexicon file '{f}' does not exist (lexicons[].path / allow_files)")
        if self.params.models and not self._artifact().is_file():
            raise ConfigError(
                f"safety: models artefact '{self._artifact()}' not found (models_path); train one with "
                "`zhcurate train-safety --data DIR --out FILE` or set `models: false`"
            )

    def setup(self) -> None:
        if self._lexicon is not None:
            return
        p = self.params
        enabled = set(p.enabled())
        lex = Lexicon(boundary_max_len=p.boundary_max_len)
        if p.builtin_lexicon:
            for cat in enabled & set(LEXICON_CATEGORIES):
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
        if p.models:
            self._models = SafetyModels.load(self._artifact())
        from stages.segment import get_segmenter

        # Dictionary words only (no HMM guesses), so unknown slang is split into characters, not glued to
        # its neighbours into a new "word" that would hide it.
        self._cut = get_segmenter(hmm=False).cut
        self._lexicon = lex

    def fingerprint_params(self) -> dict[str, Any]:
        out = super().fingerprint_params()
        files = sorted(BUILTIN_DIR.glob("*.txt")) + [Path(x.path) for x in self.params.lexicons]
        files += [Path(f) for f in self.params.allow_files]
        if self.params.models:
            files.append(self._artifact())
        digest = hashlib.sha256()
        for f in files:
            digest.update(f.name.encode() + (f.read_bytes() if f.is_file() else b""))
        out["data_sha256"] = digest.hexdigest()[:16]
        return out

    def thresholds(self) -> dict[str, float]:
        """The request, refusal and toxicity thresholds in force (the recipe's, else the artefact's) and the pair
        threshold."""
        self.setup()
        m, p = self._models, self.params
        out = {"pair": p.pair_threshold}
        for name in ("request", "refusal", "toxicity"):
            own = getattr(p, f"{name}_threshold")
            out[name] = own if own is not None else (getattr(m, name).threshold if m is not None else 1.0)
        return out

    # --- decisions -----------------------------------------------------------------------------------------
    def process(self, batch: pa.Table) -> StageResult:
        self.setup()
        n = batch.num_rows
        # Folded once here (NFKC, lower case); the lexicon and the models fold again only what is not.
        cols = {f: [fold(t or "") for t in batch.column(f).to_pylist()] for f in ("instruction", "input", "output")}
        history = [h or [] for h in batch.column("history").to_pylist()]
        outputs = cols["output"]
        requests = [
            "\n".join([*(fold(t["user"] or "") for t in turns), ins, inp]).strip()
            for turns, ins, inp in zip(history, cols["instruction"], cols["input"])
        ]
        risk, refusal_p, harm, tox = self._signals(requests, outputs)
        th = self.thresholds()
        refusal = [is_refusal_of(o, float(p) >= th["refusal"]) for o, p in zip(outputs, refusal_p)]
        scores = np.zeros(n)
        reasons: list[str | None] = [None] * n
        details: list[str | None] = [None] * n
        category: list[str | None] = [None] * n
        complying = 1.0 - np.where(refusal, 1.0, refusal_p)
        counters: dict[str, int] = defaultdict(int)
        for i in range(n):
            turns = history[i]
            req_fields = {"instruction": cols["instruction"][i], "input": cols["input"][i]}
            req_fields |= {f"history[{k}].user": fold(t["user"] or "") for k, t in enumerate(turns)}
            ans_fields = {"output": outputs[i]} | {
                f"history[{k}].assistant": fold(t["assistant"] or "") for k, t in enumerate(turns)
            }
            # A request is harmful when the request head says so, or when its own terms fire the lexicon.
            req_matches = self._matches(req_fields)  # matched once, used three ways
            req_hits = self._fire(req_matches)
            harmful = bool(req_hits) or bool(risk[i] >= th["request"])
            pair = (1.0 if req_hits else float(risk[i])) ** (1 / 3) * float(harm[i]) ** (2 / 3)
            complies = not refusal[i] and pair >= th["pair"] and (harmful or risk[i] >= RISK_FLOOR)
            harmful = harmful or complies
            cat = self._category(requests[i], req_hits, req_matches) if harmful else None
            if cat is not None and not getattr(self.params, cat).enabled:
                counters[f"disabled.{cat}"] += 1
                harmful, cat = False, None
            # The answer confirms the request's harm (it refuses, or gives harmful help); a flagged request answered
            # with ordinary help was most likely benign, and gets no category.
            if harmful and not (refusal[i] or complies):
                counters["request_unconfirmed"] += 1
                harmful, cat = False, None
            category[i] = cat
            # The answer lexicon judges what the answer adds: terms echoing the request never count (the pair
            # decides those), and a refusal may also name the request's categories.
            topics = {x for hit, _ in req_matches for x in (hit.category, hit.term)}
            tolerated = topics if refusal[i] else {t for t in topics if t not in CATEGORIES}
            ans_hits = self._fire(self._matches(ans_fields), tolerated)
            signals = {
                "request_risk": round(float(risk[i]), 4),
                "request_threshold": th["request"],
                "refusal": round(float(refusal_p[i]), 4),
                "refusal_threshold": th["refusal"],
                "refusal_phrase": bool(refusal[i] and refusal_p[i] < th["refusal"]),
                "harm": round(float(harm[i]), 4),
                "pair": round(pair, 4),
                "pair_threshold": th["pair"],
            }
            scores[i] = max(pair * complying[i], 0.0 if refusal[i] else float(tox[i]))
            if harmful:
                counters[f"harmful_request.{cat}"] += 1
            if ans_hits:
                scores[i] = 1.0
            signals["safety_score"] = round(float(scores[i]), 4)
            if ans_hits:
                reasons[i], details[i] = _lexicon_reason(ans_hits, signals)
                counters["signal.answer_lexicon"] += 1
            elif tox[i] >= th["toxicity"] and not refusal[i] and self.params.hate.enabled:
                reasons[i] = "harmful_hate"
                details[i] = detail_json(
                    signal="toxicity",
                    category="hate",
                    tc260=tc260_of("hate"),
                    field="output",
                    toxicity=round(float(tox[i]), 4),
                    toxicity_threshold=th["toxicity"],
                    **signals,
                )
                counters["signal.toxicity"] += 1
            elif harmful and complies and self.params.drop_harmful_requests:
                assert cat is not None
                reasons[i] = f"harmful_{cat}"
                details[i] = detail_json(
                    signal="request+compliance",
                    category=cat,
                    tc260=tc260_of(cat),
                    field="instruction" if self._models is None else "request",
                    terms=sorted({t for h in req_hits for t in h[4]}),
                    **signals,
                )
                counters["signal.request+compliance"] += 1
            elif harmful and refusal[i]:
                counters[f"refusal_kept.{cat}"] += 1
                counters["refusal_kept"] += 1
        table = batch.append_column(
            "safety_refusal", pa.array([bool(r and c) for r, c in zip(refusal, category)], type=pa.bool_())
        )
        table = table.append_column("safety_request_category", pa.array(category, type=pa.string()))
        table = table.append_column("safety_score", pa.array(np.round(scores, 4), type=pa.float64()))
        return StageResult(table, reasons, details, dict(counters))

    def _signals(self, requests: list[str], outputs: list[str]) -> tuple[np.ndarray, ...]:
        """Request risk, P(refusal), harm and toxicity of each pair (without models: no model says anything,
        and harm is 1 so that the request lexicon alone decides)."""
        n = len(outputs)
        m = self._models
        if m is None or n == 0:
            return np.zeros(n), np.zeros(n), np.ones(n), np.zeros(n)
        req_keys = ngram_keys(requests, m.request.bits)
        risk = m.request.probs(req_keys, key_counts(req_keys, n, m.request.bits))
        all_keys, novel = novel_keys(outputs, requests, m.toxicity.bits)
        count = key_counts(all_keys, n, m.toxicity.bits)
        refusal_p = m.refusal.probs(all_keys, count)
        harm = m.harm.probs(all_keys, count)
        tox = m.toxicity.probs(novel, count)
        short = np.array([len(compact(t)) < self.params.toxicity_min_chars for t in outputs], dtype=bool)
        return risk, refusal_p, harm, np.where(short, 0.0, tox)

    def _category(
        self, request: str, fired: list[tuple[Category, float, float, str, list[str]]], matches: list[tuple[Hit, str]]
    ) -> Category:
        """The request's category: its strongest fired lexicon category, else the heaviest category its lexicon
        terms name at all (``冰毒``, 0.5), else the category head's most likely enabled class."""
        if fired:
            return fired[0][0]
        weights: dict[Category, float] = defaultdict(float)
        for hit, _ in matches:
            weights[hit.category] += hit.weight
        if weights:
            return max(weights, key=lambda c: weights[c])
        assert self._models is not None
        head = self._models.category
        probs = head.probs([request])[0]
        order = np.argsort(-probs)
        for k in order:  # the most likely enabled category
            if getattr(self.params, head.classes[k]).enabled:
                return head.classes[k]
        return head.classes[int(order[0])]  # type: ignore[return-value]

    def _matches(self, fields: dict[str, str]) -> list[tuple[Hit, str]]:
        assert self._lexicon is not None and self._cut is not None
        return [(hit, name) for name, text in fields.items() for hit in self._lexicon.match(text or "", self._cut)]

    def _fire(
        self, matches: list[tuple[Hit, str]], tolerated: set[str] | frozenset[str] = frozenset()
    ) -> list[tuple[Category, float, float, str, list[str]]]:
        """Categories whose summed term weights over the ``(hit, field)`` matches reach their threshold, strongest
        first: ``(category, score, threshold, fields, terms)``. Hits whose category or term is ``tolerated`` are
        skipped."""
        per_cat: dict[Category, dict[str, tuple[Hit, str]]] = defaultdict(dict)
        for hit, name in matches:
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


def _lexicon_reason(
    fired: list[tuple[Category, float, float, str, list[str]]], signals: dict[str, Any]
) -> tuple[str, str]:
    cat, score, threshold, where, terms = fired[0]
    others = {c: s for c, s, *_ in fired[1:]}
    return f"harmful_{cat}", detail_json(
        signal="answer_lexicon",
        category=cat,
        tc260=tc260_of(cat),
        field=where,
        terms=terms,
        score=score,
        threshold=threshold,
        also=others,
        **signals,
    )
