"""Compiled (numba) union-find: the clustering of every dedup stage.

* :func:`union_find` — connected components over pair arrays, each labelled by its smallest node.
"""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, inline="always")
def _find(parent: np.ndarray, a: int) -> int:
    """Root of ``a``, halving the path on the way. Roots are the smallest node of their set, so
    ``parent[x] <= x`` always holds."""
    while parent[a] != a:
        parent[a] = parent[parent[a]]
        a = parent[a]
    return a


@nb.njit(cache=True, inline="always")
def _flatten(parent: np.ndarray) -> np.ndarray:
    for i in range(len(parent)):  # parent[i] <= i: one pass in order points every node at its root
        parent[i] = parent[parent[i]]
    return parent


@nb.njit(cache=True, nogil=True)
def union_find(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Connected components of the undirected graph on ``n`` nodes with edges ``(left[k], right[k])``:
    int64 labels, each the smallest node of its component (so labels do not depend on edge order)."""
    parent = np.arange(n)
    for k in range(len(left)):
        a = _find(parent, left[k])
        b = _find(parent, right[k])
        if a < b:
            parent[b] = a
        elif b < a:
            parent[a] = b
    return _flatten(parent)
