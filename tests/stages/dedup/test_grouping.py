"""The group-by-key primitive every engine implements (stages/dedup/grouping.py), on tiny key rows."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from stages.dedup.grouping import KEY_ROWS_SCHEMA, group_pairs, key_rows, pair_rows


def pairs_of(rows: pa.Table) -> set[tuple[int, int]]:
    t = group_pairs(rows)
    return set(zip(t.column("left").to_pylist(), t.column("right").to_pylist(), strict=True))


def test_each_member_pairs_with_the_group_head_and_its_predecessor() -> None:
    # key 5: seq 10, 11, 12, 13; key 9: seq 20, 21; key 7 alone
    rows = pa.table({"key": [5, 9, 5, 7, 5, 9, 5], "seq": [12, 21, 10, 30, 13, 20, 11]}, schema=KEY_ROWS_SCHEMA)
    assert pairs_of(rows) == {(10, 11), (10, 12), (11, 12), (10, 13), (12, 13), (20, 21)}


def test_pairs_do_not_depend_on_row_order_or_a_split_by_key() -> None:
    rng = np.random.default_rng(3)
    keys = rng.integers(0, 40, size=(300, 3)).astype(np.uint64) | (np.arange(3, dtype=np.uint64) << np.uint64(40))
    rows = key_rows(keys, np.arange(1000, 1300))
    whole = pairs_of(rows)
    shuffled = rows.take(rng.permutation(rows.num_rows))
    part = shuffled.column("key").to_numpy() % np.uint64(4)
    split = set().union(*(pairs_of(shuffled.filter(pa.array(part == p))) for p in range(4)))
    assert whole == pairs_of(shuffled) == split
    assert all(a < b for a, b in whole) and len(whole) > 300


def test_wide_keys_take_the_lexsort_path() -> None:
    big = np.uint64(2**63 + 5)
    rows = pa.table({"key": pa.array([big, 1, big], pa.uint64()), "seq": [3, 1, 2]}, schema=KEY_ROWS_SCHEMA)
    assert pairs_of(rows) == {(2, 3)}


def test_pair_rows_maps_seq_to_distinct_row_pairs() -> None:
    seq = np.array([40, 10, 30, 20])
    pairs = pa.table({"left": [10, 10, 20, 30], "right": [30, 30, 40, 30]})
    a, b = pair_rows(seq, pairs)
    assert list(zip(a.tolist(), b.tolist(), strict=True)) == [(0, 3), (1, 2)]  # (10,30) once, (30,30) dropped
