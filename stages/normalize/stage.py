"""``normalize``: make equal things look equal before filtering and dedup, without damaging what must stay.

Rules, applied in this order to system, instruction, input, output and every history turn (each switchable):

* ``html_entities`` — ``&lt;`` → ``<``, ``&amp;`` → ``&``, ``&#39;`` → ``'``, ``&nbsp;`` → space. Only
  complete entities (with ``;``) are decoded, so ``x&param`` stays as written.
* ``invisible`` — zero-width characters (U+200B–U+200D, U+2060, U+FEFF), soft hyphens and C0/C1 control
  characters are removed (newline and tab stay; ``\\r\\n`` and ``\\r`` become ``\\n``).
* ``fullwidth`` — full-width ASCII letters, digits and symbols become half-width
  (``ＡＢＣ１２３`` → ``ABC123``); the Chinese full-width punctuation ``，！？；：（）`` stays.
* ``cjk_punct`` — ``, ? ! : ; .`` directly after a Chinese character become ``，？！：；。``; never in
  numbers, URLs, e-mails, Latin text, ellipses (``...``), before a letter/digit (``文件.txt``) or on
  code-like lines (indented, containing ``=`` ``{`` ``}``, a call ``f(``, a trailing ``;`` or an HTML tag).
* ``whitespace`` — U+3000, NBSP and other Unicode spaces become spaces; interior runs of spaces collapse (line
  indentation stays, for code); spaces before a newline go; 3+ newlines become 2; each field is stripped.
* ``cjk_spaces`` — spaces between two Chinese characters or Chinese punctuation are removed
  (``年终 奖发 了 ，`` → ``年终奖发了，``); spaces between Chinese and Latin text stay.
* ``t2s`` — Traditional → Simplified with OpenCC (``t2s``, ``tw2sp``, ``hk2s`` or ``off``), one OpenCC call
  per batch. A record whose request (system, instruction, input, user turns) names Traditional Chinese
  (``keep_traditional_keywords``) is left as written, and so is any piece containing Japanese kana.
* ``placeholders`` — an ``input`` that only says there is no input (``<noinput>``, ``无输入``, ``N/A``)
  becomes "".

Fenced code, inline code, URLs, e-mails and LaTeX (see :mod:`stages.textspans`) are left byte-for-byte.
A record whose instruction and output are both empty afterwards is rejected with ``empty_after_normalize``.
Counters: ``changed.<rule>`` = records the rule changed, ``changed.any``, ``t2s.kept_traditional``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

from schemas.errors import ConfigError
from schemas.record import HISTORY_TYPE, TEXT_FIELDS
from stages.base import RecordStage, StageResult, detail_json
from stages.normalize.params import NormalizeParams
from stages.normalize.rules import BIT, KANA, OPENCC_SEP, RULES, convert_many, needs_work, prose
from stages.textspans import split_protected

_PLACEHOLDER_TRAIL = "。.;；!！ "


class _Field:
    """One text field of a batch: a column, or all user (or assistant) turns of the history, flattened."""

    __slots__ = ("name", "original", "owner", "parts", "values")

    def __init__(self, name: str, original: list[str | None], owner: list[int]) -> None:
        self.name = name
        self.original = original
        self.owner = owner  # the row of each value
        self.values: list[str | None] = list(original)  # normalized text
        self.parts: dict[int, list[str]] = {}  # pieces of the values that have protected spans

    def join(self) -> None:
        for j, parts in self.parts.items():
            self.values[j] = "".join(parts)


class NormalizeStage(RecordStage):
    """Normalizes text in place; rejects only records left without instruction and output."""

    name = "normalize"
    Params = NormalizeParams
    params: NormalizeParams
    resources = ("_converter",)  # OpenCC objects do not pickle; each process loads its own

    def __init__(self, params: NormalizeParams | None = None) -> None:
        super().__init__(params)
        p = self.params
        self._converter: Callable[[str], str] | None = None
        self._placeholders = frozenset(_placeholder_key(x) for x in p.placeholders)
        self._keyword_regex = "|".join(re.escape(k) for k in p.keep_traditional_keywords)

    # --- lifecycle -----------------------------------------------------------------------------------------
    def check(self) -> None:
        if self.params.t2s != "off":
            self._load_converter()

    def setup(self) -> None:
        self.check()

    def _load_converter(self) -> Callable[[str], str]:
        if self._converter is None:
            try:
                import opencc
            except ImportError as e:  # pragma: no cover - opencc is a dependency
                raise ConfigError("normalize: t2s needs OpenCC: pip install opencc (or set t2s: off)") from e
            try:
                self._converter = opencc.OpenCC(self.params.t2s).convert
            except Exception as e:
                raise ConfigError(f"normalize: OpenCC cannot load config '{self.params.t2s}': {e}") from e
        return self._converter

    # --- the stage -----------------------------------------------------------------------------------------
    def process(self, batch: pa.Table) -> StageResult:
        n = batch.num_rows
        fields = [_Field(f, batch.column(f).to_pylist(), list(range(n))) for f in TEXT_FIELDS]
        hist = batch.column("history").combine_chunks()
        turns = hist.flatten()
        parents = pc.list_parent_indices(hist).to_pylist()
        for role in ("user", "assistant"):
            # pc.struct_field honours null turns (a null struct gives null texts)
            fields.append(_Field(f"history.{role}", pc.struct_field(turns, role).to_pylist(), parents))
        by_name = {f.name: f for f in fields}

        masks = [0] * n
        t2s = self.params.t2s != "off"
        keep = self._traditional_rows(batch, turns, parents) if t2s else set()
        pending: list[tuple[_Field, int, int]] = []  # (field, value index, piece index or -1) to convert
        texts: list[str] = []
        for fld in fields:
            self._apply_rules(fld, masks, keep if t2s else None, pending, texts)
        if texts:
            self._apply_t2s(pending, texts, masks)
        for fld in fields:
            fld.join()
        if self._placeholders:
            self._empty_placeholders(by_name["input"], masks)

        reasons, details = self._reject_empty(by_name, fields, masks)
        table = batch
        for f in fields[: len(TEXT_FIELDS)]:
            if f.values != f.original:
                idx = table.schema.get_field_index(f.name)
                table = table.set_column(idx, f.name, pa.array(f.values, pa.string()))
        user, assistant = by_name["history.user"], by_name["history.assistant"]
        if user.values != user.original or assistant.values != assistant.original:
            idx = table.schema.get_field_index("history")
            new_hist = _rebuild_history(hist, turns, user.values, assistant.values)
            table = table.set_column(idx, "history", new_hist)

        counters = {f"changed.{r}": sum(1 for m in masks if m & BIT[r]) for r in RULES}
        counters["changed.any"] = sum(1 for m in masks if m)
        counters["t2s.kept_traditional"] = len(keep)
        return StageResult(table, reasons, details, counters)

    # --- rules ---------------------------------------------------------------------------------------------
    def _apply_rules(
        self,
        fld: _Field,
        masks: list[int],
        keep: set[int] | None,
        pending: list[tuple[_Field, int, int]],
        texts: list[str],
    ) -> None:
        """Every rule but t2s and placeholders, piece by piece around protected spans; queue the pieces that
        t2s must convert (``keep`` is None when t2s is off, else the rows it must leave as written)."""
        strip = self.params.whitespace
        values, owner = fld.values, fld.owner
        for j, s in enumerate(values):
            if not s:
                continue
            pieces = split_protected(s)
            convert = keep is not None and owner[j] not in keep
            bits = 0
            if len(pieces) == 1 and not pieces[0][1]:
                if needs_work(s):
                    s, bits = prose(s, self.params)
                if strip and s and (s[0].isspace() or s[-1].isspace()):
                    s = s.strip()
                    bits |= BIT["whitespace"]
                if bits:
                    values[j] = s
                if convert and s and not s.isascii():
                    pending.append((fld, j, -1))
                    texts.append(s)
            else:
                parts: list[str] = []
                last = len(pieces) - 1
                for k, (text, protected) in enumerate(pieces):
                    if not protected:
                        if needs_work(text):
                            text, b = prose(text, self.params)
                            bits |= b
                        if strip and (k == 0 or k == last):
                            t = text.lstrip() if k == 0 else text
                            t = t.rstrip() if k == last else t
                            if t != text:
                                text = t
                                bits |= BIT["whitespace"]
                        if convert and text and not text.isascii():
                            pending.append((fld, j, k))
                            texts.append(text)
                    parts.append(text)
                fld.parts[j] = parts
            if bits:
                masks[owner[j]] |= bits

    def _traditional_rows(self, batch: pa.Table, turns: pa.StructArray, parents: list[int]) -> set[int]:
        """Rows whose request asks for Traditional Chinese (their text is left as written); vectorized."""
        if not self._keyword_regex:
            return set()
        rows: set[int] = set()
        pattern = self._keyword_regex
        for f in ("system", "instruction", "input"):
            hit = pc.match_substring_regex(batch.column(f), pattern, ignore_case=True).fill_null(False)
            rows.update(pc.indices_nonzero(hit).to_pylist())
        if len(turns):
            users = pc.struct_field(turns, "user")
            hit = pc.match_substring_regex(users, pattern, ignore_case=True).fill_null(False)
            rows.update(parents[k] for k in pc.indices_nonzero(hit).to_pylist())
        return rows

    def _apply_t2s(self, pending: list[tuple[_Field, int, int]], texts: list[str], masks: list[int]) -> None:
        """Convert the queued pieces with one OpenCC call; pieces with Japanese kana stay as written."""
        if KANA.search(OPENCC_SEP.join(texts)):
            chosen = [i for i, t in enumerate(texts) if not KANA.search(t)]
            pending, texts = [pending[i] for i in chosen], [texts[i] for i in chosen]
        converted = convert_many(self._load_converter(), texts)
        for (f, j, k), old, new in zip(pending, texts, converted, strict=True):
            if new == old:
                continue
            masks[f.owner[j]] |= BIT["t2s"]
            if k < 0:
                f.values[j] = new
            else:
                f.parts[j][k] = new

    def _empty_placeholders(self, fld: _Field, masks: list[int]) -> None:
        values, keys = fld.values, self._placeholders
        for j, s in enumerate(values):
            if s and len(s) <= 24 and _placeholder_key(s) in keys:
                values[j] = ""
                masks[fld.owner[j]] |= BIT["placeholders"]

    def _reject_empty(
        self, by_name: dict[str, _Field], fields: list[_Field], masks: list[int]
    ) -> tuple[list[str | None], list[str | None]]:
        """``empty_after_normalize`` for rows without instruction and output; those rows keep their original
        text (the ledger shows what came in) and count no changes."""
        n = len(masks)
        reasons: list[str | None] = [None] * n
        details: list[str | None] = [None] * n
        ins, out = by_name["instruction"], by_name["output"]
        empty = [i for i, (a, b) in enumerate(zip(ins.values, out.values, strict=True)) if not a and not b]
        if not empty:
            return reasons, details
        for i in empty:
            reasons[i] = "empty_after_normalize"
            emptied = [f.name for f in (ins, out) if f.original[i]]
            details[i] = detail_json(fields=["instruction", "output"], emptied_by_normalize=emptied)
            masks[i] = 0
        rows = set(empty)
        for f in fields:
            for j, o in enumerate(f.owner):
                if o in rows:
                    f.values[j] = f.original[j]
        return reasons, details


def _placeholder_key(s: str) -> str:
    return s.strip().rstrip(_PLACEHOLDER_TRAIL).casefold()


def _rebuild_history(
    hist: pa.ListArray, turns: pa.StructArray, users: list[str | None], assistants: list[str | None]
) -> pa.Array:
    """``hist`` (whose flattened turns are ``turns``) with the turns' texts replaced: same list lengths, same
    null lists, same null turns."""
    values = pa.StructArray.from_arrays(
        [pa.array(users, pa.string()), pa.array(assistants, pa.string())],
        names=["user", "assistant"],
        mask=turns.is_null() if turns.null_count else None,
    )
    lengths = pc.list_value_length(hist).fill_null(0)
    offsets = pa.concat_arrays([pa.array([0], pa.int32()), pc.cumulative_sum(lengths).cast(pa.int32())])
    mask = hist.is_null() if hist.null_count else None
    return pa.ListArray.from_arrays(offsets, values, type=HISTORY_TYPE, mask=mask)
