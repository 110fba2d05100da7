"""Band keys, the array union-find and the clustering core against brute force."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline_lib.dedup.clusters import ClusterParams, UnionFind, band_keys, candidate_pairs, cluster


def components_brute_force(n: int, pairs: list[tuple[int, int]]) -> list[int]:
    label = list(range(n))
    changed = True
    while changed:
        changed = False
        for u, v in pairs:
            lo = min(label[u], label[v])
            if label[u] != lo or label[v] != lo:
                label[u] = label[v] = lo
                changed = True
    return label


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 40).flatmap(lambda n: st.tuples(
    st.just(n), st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=80))))
def test_union_find_matches_brute_force_with_the_smallest_member_as_root(case):
    n, pairs = case
    uf = UnionFind(n)
    if pairs:
        uf.union(np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]))
    assert uf.flatten().tolist() == components_brute_force(n, pairs)


def test_union_in_several_rounds_accumulates():
    uf = UnionFind(6)
    uf.union(np.array([5]), np.array([4]))
    uf.union(np.array([3]), np.array([4]))
    uf.union(np.array([1, 2]), np.array([3, 0]))
    assert uf.flatten().tolist() == [0, 1, 0, 1, 1, 1]


def test_candidate_pairs_join_equal_keys_only():
    keys = np.array([7, 3, 7, 9, 3, 7], dtype=np.uint64)
    u, v = candidate_pairs(keys, None, neighbours=2)
    pairs = {tuple(sorted(p)) for p in zip(u.tolist(), v.tolist())}
    assert pairs == {(0, 2), (2, 5), (0, 5), (1, 4)}
    u, v = candidate_pairs(keys, np.array([True, True, False, True, True, True]), neighbours=1)
    assert {tuple(sorted(p)) for p in zip(u.tolist(), v.tolist())} == {(0, 5), (1, 4)}


def test_band_keys_depend_on_the_band_rows_only():
    rng = np.random.default_rng(0)
    sig = rng.integers(0, 2**32, size=(4, 20), dtype=np.uint32)
    sig[1, :5] = sig[0, :5]  # rows 0 and 1 agree on band 0 only
    assert band_keys(sig, 0, 5)[0] == band_keys(sig, 0, 5)[1]
    assert band_keys(sig, 1, 5)[0] != band_keys(sig, 1, 5)[1]
    same = np.repeat(sig[:1], 2, axis=0)
    assert band_keys(same, 0, 5)[0] != band_keys(same, 1, 5)[0]  # bands never share keys


def test_cluster_keeps_the_best_ranked_member_and_verification_blocks_weak_collisions():
    rng = np.random.default_rng(1)
    sig = rng.integers(0, 2**32, size=(5, 20), dtype=np.uint32)
    sig[1] = sig[0]
    sig[1, 10:] = rng.integers(0, 2**32, size=10)  # 1 ~ 0: shares bands 0-1 only (J est 0.5)
    sig[2] = sig[0]
    sig[2, 19] = 7  # 2 ~ 0: shares 19 of 20 slots
    exact = np.array([1, 2, 3, 4, 4], dtype=np.uint64)  # rows 3 and 4: same text
    has = np.ones(5, dtype=bool)
    loose = cluster(sig, exact, has, ClusterParams(bands=4, rows=5))
    assert loose.tolist() == [0, 0, 0, 3, 3]
    strict = cluster(sig, exact, has, ClusterParams(bands=4, rows=5, verify_threshold=0.8))
    assert strict.tolist() == [0, 1, 0, 3, 3]
    # Rank says row 2 is preferred, then 4: the roots follow the ranks, not the row order.
    ranked = cluster(sig, exact, has, ClusterParams(bands=4, rows=5, verify_threshold=0.8),
                     rank=np.array([3, 4, 0, 2, 1]))
    assert ranked.tolist() == [2, 1, 2, 4, 4]
    # Rows without shingles take no part in banding even with equal (empty) signatures.
    no_shingles = cluster(sig, None, np.array([True, False, False, True, True]), ClusterParams(bands=4, rows=5))
    assert no_shingles.tolist() == [0, 1, 2, 3, 4]


def test_a_crowded_bucket_pairs_by_preference_so_shard_order_does_not_decide_a_merge():
    # a1 ~ a2 (109 of 128 slots equal) collide in band 0 only, and five unrelated documents share
    # that band (a boilerplate band). With 4 neighbours per row, pairs drawn in row order missed
    # a1-a2 whenever the shards put the strangers between them.
    rng = np.random.default_rng(0)
    perm, bands, rows = 128, 20, 5
    a1 = rng.integers(0, 2**32, perm, dtype=np.uint32)
    a2 = a1.copy()
    for b in range(1, bands):
        a2[b * rows] ^= np.uint32(1)
    strangers = rng.integers(0, 2**32, (5, perm), dtype=np.uint32)
    strangers[:, :rows] = a1[:rows]
    docs = {"a1": a1, "a2": a2, **{f"x{i}": strangers[i] for i in range(5)}}
    preference = ["a1", "a2", "x0", "x1", "x2", "x3", "x4"]
    params = ClusterParams(bands, rows, verify_threshold=0.65, neighbours=4)
    kept_sets = set()
    for seed in range(12):
        order = list(np.random.default_rng(seed).permutation(preference))
        roots = cluster(np.stack([docs[d] for d in order]), None, np.ones(7, dtype=bool), params,
                        rank=np.array([preference.index(d) for d in order]))
        kept_sets.add(tuple(sorted(d for i, d in enumerate(order) if roots[i] == i)))
    assert kept_sets == {("a1", "x0", "x1", "x2", "x3", "x4")}
