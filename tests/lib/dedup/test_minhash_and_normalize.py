"""Normalisation (fast path == the regex definition) and signatures (== datasketch's MinHash)."""

from __future__ import annotations

import numpy as np
import pytest
from datasketch import MinHash
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline_lib.dedup.minhash import compute_signatures, estimated_jaccard, permutations
from pipeline_lib.dedup.normalize import exact_hash, normalize_bytes, normalize_reference, word_shingles
from pipeline_lib.dedup.shingle_hash import poly_hash32, poly_shingle_hashes
from tests.lib.dedup.docs import article, lightly_edited


def test_normalisation_folds_case_punctuation_digits_and_spacing():
    assert normalize_bytes("Don’t PANIC!!  It's 2019-12-31,\tat 10:00_am…") == b"dont panic its 0 0 0 at 0 0 am"
    assert normalize_bytes("Ｆｕｌｌ\u00a0width ①") == b"full width 0"  # NFKC
    assert normalize_bytes("Größe: ٣٤ Äpfel") == b"gr\xc3\xb6\xc3\x9fe 0 \xc3\xa4pfel"
    assert normalize_bytes(None) == normalize_bytes("") == normalize_bytes(" ¡¿… ") == b""
    # Vowel signs are part of their word, not separators ("काम" was "क म").
    assert normalize_bytes("राजेश ने काम किया।").decode() == "राजेश ने काम किया"


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60))
def test_fast_normalisation_equals_the_regex_definition(text):
    assert normalize_bytes(text) == normalize_reference(text)


def test_real_texts_normalise_the_same_both_ways(shared_data):
    import json

    with open(shared_data / "dedup" / "near_dups.jsonl", encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    assert [normalize_bytes(t) for t in texts] == [normalize_reference(t) for t in texts]


def test_shingles_and_exact_hash():
    assert word_shingles(b"a b c d", 3) == [b"a b c", b"b c d"]
    assert word_shingles(b"a b", 3) == [b"a b"] and word_shingles(b"", 3) == []
    assert exact_hash(normalize_bytes("Hello,  World!")) == exact_hash(normalize_bytes("hello world"))
    assert exact_hash(b"hello world") != exact_hash(b"hello world!")


@pytest.mark.parametrize("ngram,num_perm,seed", [(3, 128, 1), (5, 112, 1), (1, 64, 42)])
def test_signatures_are_identical_to_datasketch(ngram, num_perm, seed):
    texts = [normalize_bytes(article(i, words=50 + 400 * (i % 3))) for i in range(12)] + [b"", b"one two"]
    sig, counts = compute_signatures(texts, ngram, num_perm, seed, "sha1")
    for text, row, count in zip(texts, sig, counts):
        reference = MinHash(num_perm=num_perm, seed=seed)
        shingles = word_shingles(text, ngram)
        for shingle in shingles:
            reference.update(shingle)
        assert count == len(shingles)
        np.testing.assert_array_equal(row, reference.hashvalues)


def test_documents_spanning_several_hash_chunks_get_one_signature():
    texts = [normalize_bytes(article(7, words=20_000)), normalize_bytes(article(8, words=5))]
    sig, _ = compute_signatures(texts, 3, 64, 1, "sha1")
    reference = MinHash(num_perm=64, seed=1)
    reference.update_batch(word_shingles(texts[0], 3))
    np.testing.assert_array_equal(sig[0], reference.hashvalues)


@pytest.mark.parametrize("num_perm,seed", [(128, 1), (112, 7), (256, 12345)])
def test_permutations_equal_datasketchs(num_perm, seed):
    a, b = permutations(num_perm, seed)
    ref_a, ref_b = MinHash(num_perm=num_perm, seed=seed).permutations
    assert a.dtype == ref_a.dtype == np.uint32
    np.testing.assert_array_equal(a, ref_a)
    np.testing.assert_array_equal(b, ref_b)


def test_estimated_jaccard_tracks_the_true_jaccard():
    base = normalize_bytes(article(3, words=2000))
    edited = normalize_bytes(lightly_edited(article(3, words=2000), seed=1, edits=150))
    a, b = set(word_shingles(base, 3)), set(word_shingles(edited, 3))
    true = len(a & b) / len(a | b)
    sig, _ = compute_signatures([base, edited], 3, 1024, 1, "sha1")
    assert abs(float(estimated_jaccard(sig[0], sig[1])) - true) < 0.05
    datasketch_pair = [MinHash(num_perm=1024, seed=1) for _ in range(2)]
    for m, shingles in zip(datasketch_pair, (a, b)):
        m.update_batch(list(shingles))
    assert float(estimated_jaccard(sig[0], sig[1])) == pytest.approx(datasketch_pair[0].jaccard(datasketch_pair[1]))


@pytest.mark.parametrize("ngram", [1, 3, 5])
def test_vectorised_shingle_hashes_equal_the_scalar_definition(ngram):
    texts = [normalize_bytes(article(i, words=i * 37)) for i in range(8)] + [b"", b"one", b"one two", b"x" * 3000]
    hashes, counts = poly_shingle_hashes(texts, ngram)
    assert counts.tolist() == [len(word_shingles(t, ngram)) for t in texts]
    assert hashes.tolist() == [poly_hash32(s) for t in texts for s in word_shingles(t, ngram)]


def test_vectorised_hashing_across_batches(monkeypatch):
    from pipeline_lib.dedup import shingle_hash

    texts = [normalize_bytes(article(i, words=200)) for i in range(30)]
    whole, whole_counts = poly_shingle_hashes(texts, 3)
    monkeypatch.setattr(shingle_hash, "_BATCH_BYTES", 3000)  # several batches, one doc each
    split, split_counts = poly_shingle_hashes(texts, 3)
    np.testing.assert_array_equal(whole, split)
    np.testing.assert_array_equal(whole_counts, split_counts)


def test_poly64_signatures_are_datasketch_minhash_with_that_hashfunc():
    texts = [normalize_bytes(article(i, words=300)) for i in range(6)] + [b"", b"tiny"]
    sig, _ = compute_signatures(texts, 3, 128, 1, "poly64")
    for text, row in zip(texts, sig):
        reference = MinHash(num_perm=128, seed=1, hashfunc=poly_hash32)
        for shingle in word_shingles(text, 3):
            reference.update(shingle)
        np.testing.assert_array_equal(row, reference.hashvalues)


def test_poly64_and_sha1_estimate_the_same_jaccard():
    """Statistically equivalent to datasketch's default: both estimates track the true Jaccard."""
    pairs = []
    for seed in range(6):
        base = normalize_bytes(article(100 + seed, words=1500))
        pairs.append((base, normalize_bytes(lightly_edited(base.decode(), seed=seed, edits=40 * (seed + 1)))))
    texts = [t for pair in pairs for t in pair]
    sha1_sig, _ = compute_signatures(texts, 3, 512, 1, "sha1")
    poly_sig, _ = compute_signatures(texts, 3, 512, 1, "poly64")
    for i, (a, b) in enumerate(pairs):
        sa, sb = set(word_shingles(a, 3)), set(word_shingles(b, 3))
        true = len(sa & sb) / len(sa | sb)
        # 512 permutations: standard error <= 0.022, so 4 sigma = 0.09
        assert abs(float(estimated_jaccard(poly_sig[2 * i], poly_sig[2 * i + 1])) - true) < 0.09
        assert abs(float(estimated_jaccard(sha1_sig[2 * i], sha1_sig[2 * i + 1])) - true) < 0.09
    assert not np.array_equal(sha1_sig, poly_sig)  # different hashes, same statistics
