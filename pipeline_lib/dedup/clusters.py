"""Global clustering of MinHash signatures in bounded memory: band keys, sort, union-find.

The union-find works on *preference positions* (position 0 is the document a keep rule prefers
most) and always hooks the larger root under the smaller one, so a component's root is the
document to keep; signatures stay in their row order, only a rank array maps rows to positions. Per band, the rows of the band are folded into one 64-bit key per document,
``argsort`` brings equal keys together, and candidate pairs are drawn between neighbours in that
order. No Python object is created per document or per band: each band costs a few uint64/int64
arrays of length n, freed before the next band.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline_lib.dedup.minhash import estimated_jaccard

_MUL = np.uint64(0x9E3779B97F4A7C15)  # golden-ratio multiplier: spreads the bits of each row
_SHIFT = np.uint64(31)


def band_keys(sig: np.ndarray, band: int, rows: int) -> np.ndarray:
    """One uint64 key per document for one band (equal band rows -> equal keys)."""
    start = np.uint64(((band + 1) * int(_MUL)) & 0xFFFFFFFFFFFFFFFF)  # differs per band
    key = np.full(sig.shape[0], start, dtype=np.uint64)
    for col in range(band * rows, (band + 1) * rows):
        key ^= sig[:, col].astype(np.uint64)
        key *= _MUL
        key ^= key >> _SHIFT
    return key


class UnionFind:
    """Array union-find; roots are the smallest member, so the root is the preferred document."""

    def __init__(self, n: int, index_type=np.int64):
        self.parent = np.arange(n, dtype=index_type)

    def flatten(self) -> np.ndarray:
        """Point every row straight at its root (pointer jumping), return the parent array."""
        parent = self.parent
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                return parent
            parent[:] = grand

    def roots(self, rows: np.ndarray) -> np.ndarray:
        return self.flatten()[rows]

    def union(self, u: np.ndarray, v: np.ndarray) -> None:
        """Merge the components of each pair (u[i], v[i])."""
        while len(u):
            parent = self.flatten()
            ru, rv = parent[u], parent[v]
            apart = ru != rv
            if not apart.any():
                return
            u, v, ru, rv = u[apart], v[apart], ru[apart], rv[apart]
            lo, hi = np.minimum(ru, rv), np.maximum(ru, rv)
            # Several pairs may want to move the same root; the smallest target wins this round
            # and the pairs it did not satisfy are retried against the new roots.
            np.minimum.at(parent, hi, lo)


@dataclass(frozen=True)
class ClusterParams:
    bands: int
    rows: int
    verify_threshold: float = 0.0  # 0 = merge every band collision unverified
    neighbours: int = 4  # pairs drawn to up to this many following rows in a band bucket


def candidate_pairs(keys: np.ndarray, eligible: np.ndarray | None, neighbours: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of rows with equal keys: each row with its next ``neighbours`` rows in key order.

    With one neighbour the pairs chain every bucket together; more neighbours give a verifier
    something to fall back on when one member of a bucket is a false positive.
    """
    if eligible is None:
        order = np.argsort(keys, kind="stable")
    else:
        rows = np.flatnonzero(eligible)
        order = rows[np.argsort(keys[rows], kind="stable")]
    sorted_keys = keys[order]
    us, vs = [], []
    for step in range(1, max(1, neighbours) + 1):
        if step >= len(order):
            break
        same = np.flatnonzero(sorted_keys[:-step] == sorted_keys[step:])
        if not len(same):
            break  # no bucket has step+1 members, so no larger step can match either
        us.append(order[same])
        vs.append(order[same + step])
    if not us:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    return np.concatenate(us), np.concatenate(vs)


def cluster(sig: np.ndarray | None, exact: np.ndarray | None, has_shingles: np.ndarray | None,
            params: ClusterParams, rank: np.ndarray | None = None, verify_chunk: int = 1 << 16) -> np.ndarray:
    """The kept row (cluster root) of every row: exact-hash groups, then MinHash LSH bands.

    ``sig`` (n x num_perm uint32) may be None for exact-only; ``exact`` (n uint64) may be None
    for near-only. Rows without shingles take no part in banding. ``rank[row]`` is the row's
    preference position (default: the row order itself); the root is the best-ranked member.
    """
    n = len(exact) if exact is not None else sig.shape[0]
    index_type = np.int32 if n < 2**31 else np.int64
    if rank is None:
        rank = np.arange(n, dtype=index_type)
    position_to_row = np.empty(n, dtype=index_type)
    position_to_row[rank] = np.arange(n, dtype=index_type)
    # Pairs are drawn in preference order (keys permuted to rank positions): within a bucket each
    # document meets its best-ranked neighbours, whatever shard order put the rows where they are.
    # Drawn in row order, two near-duplicates in a bucket crowded by five band-sharing strangers
    # merged or not depending on which shards they came from.
    uf = UnionFind(n, index_type)
    if exact is not None:
        uf.union(*candidate_pairs(exact[position_to_row], None, 1))
    if sig is not None:
        eligible = None if has_shingles is None else has_shingles[position_to_row]
        for band in range(params.bands):
            keys = band_keys(sig, band, params.rows)[position_to_row]
            pu, pv = candidate_pairs(keys, eligible, params.neighbours)
            del keys
            if params.verify_threshold > 0 and len(pu):
                parent = uf.flatten()
                todo = parent[pu] != parent[pv]  # pairs already joined need no check
                pu, pv = pu[todo], pv[todo]
                u, v = position_to_row[pu], position_to_row[pv]
                similar = np.zeros(len(u), dtype=bool)
                for s in range(0, len(u), verify_chunk):
                    part = slice(s, s + verify_chunk)
                    similar[part] = estimated_jaccard(sig[u[part]], sig[v[part]]) >= params.verify_threshold
                pu, pv = pu[similar], pv[similar]
            uf.union(pu, pv)
    root_position = uf.flatten()
    return position_to_row[root_position[rank]]
