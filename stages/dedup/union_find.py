"""Compiled (numba) union-find: the clustering of every dedup stage.

* :func:`union_find` — connected components over pair arrays, each labelled by its smallest node.
* :func:`link_buckets` verifies and unions LSH bucket candidates (:mod:`stages.dedup.minhash`) straight into a
  union-find; :func:`flatten` gives its labels.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_MASK32 = np.uint64(0xFFFFFFFF)


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


@nb.njit(cache=True, nogil=True)
def link_buckets(
    keys: np.ndarray, by_seq: np.ndarray, sig: np.ndarray, parent: np.ndarray, threshold: float
) -> tuple[int, int]:
    """Verify and union the LSH candidates of one band, in place on the union-find ``parent``.

    ``keys`` are the band's sorted keys: a bucket id in the high 32 bits over the row's rank in ``_seq`` order
    (``by_seq[rank]`` is the row), so buckets are runs with members in ``_seq`` order. Each member is a
    candidate with the bucket's first member and with its predecessor; a candidate already in the same cluster
    is skipped, any other is linked when its estimated Jaccard (equal slots / num_perm) reaches ``threshold``.
    Skipping never changes the clusters, so they depend only on the candidates. Returns (candidates verified,
    candidates linked).
    """
    k = sig.shape[1]
    verified = 0
    linked = 0
    head = 0
    for i in range(1, len(keys)):
        if (keys[i] >> np.uint64(32)) != (keys[i - 1] >> np.uint64(32)):
            head = i
            continue
        a = by_seq[keys[i] & _MASK32]
        for c in range(2):
            if c == 1 and i - 1 == head:
                break
            b = by_seq[keys[head if c == 0 else i - 1] & _MASK32]
            ra = _find(parent, a)
            rb = _find(parent, b)
            if ra == rb:
                continue
            verified += 1
            equal = 0
            for s in range(k):
                if sig[a, s] == sig[b, s]:
                    equal += 1
            if equal / k >= threshold:
                linked += 1
                if ra < rb:
                    parent[rb] = ra
                else:
                    parent[ra] = rb
    return verified, linked


@nb.njit(cache=True, nogil=True)
def flatten(parent: np.ndarray) -> np.ndarray:
    """The labels of a union-find built by :func:`link_buckets`: each node's smallest-node root."""
    return _flatten(parent)
