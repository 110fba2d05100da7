"""Vectorised 32-bit shingle hashes: every word n-gram of a batch of texts hashed in NumPy.

datasketch's default ``sha1_hash32`` costs one SHA-1 call per shingle from Python; that call is
most of the time of a signature. ``poly64`` hashes the same shingle bytes with no Python call per
shingle: a polynomial hash ``h = sum(byte_j * P**(e-1-j)) mod 2**64`` over the bytes of a
shingle, read off prefix sums of ``byte_j * P**-j`` (P is odd, so it has an inverse mod 2**64),
then length-mixed through the MurmurHash3 64-bit finaliser and cut to its high 32 bits.

``poly_hash32(shingle)`` is the same function for one shingle; a datasketch ``MinHash`` built with
``hashfunc=poly_hash32`` gives exactly our signatures (a test checks it), so the permutation
scheme and the estimator are datasketch's, only the shingle hash differs.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

_P = 0xA0761D6478BD642F  # odd, so invertible modulo 2**64
_P_INV = pow(_P, -1, 1 << 64)
_MASK = (1 << 64) - 1
_F1, _F2 = 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53  # MurmurHash3 fmix64
_BATCH_BYTES = 1 << 20  # text bytes per vectorised batch: ~40 bytes of temporaries per text byte
_SPACE = ord(" ")

_powers: dict[str, np.ndarray] = {"p": np.ones(1, np.uint64), "q": np.ones(1, np.uint64)}


def poly_hash32(shingle: bytes) -> int:
    """The shingle hash of one shingle (reference and datasketch ``hashfunc``)."""
    h = 0
    for byte in shingle:
        h = (h * _P + byte) & _MASK
    h ^= len(shingle)
    h ^= h >> 33
    h = (h * _F1) & _MASK
    h ^= h >> 33
    h = (h * _F2) & _MASK
    h ^= h >> 33
    return h >> 32


def _power_tables(length: int) -> tuple[np.ndarray, np.ndarray]:
    """P**j and P**-j (mod 2**64) for j < length, grown on demand and kept for the next batch."""
    if len(_powers["p"]) < length:
        size = max(length, 2 * len(_powers["p"]))
        for key, base in (("p", _P), ("q", _P_INV)):
            table = np.full(size, base, dtype=np.uint64)
            table[0] = 1
            _powers[key] = np.cumprod(table)  # wraps mod 2**64, which is the arithmetic we want
    return _powers["p"][:length], _powers["q"][:length]


def _fmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(_F1)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(_F2)
    return h ^ (h >> np.uint64(33))


def _hash_batch(texts: Sequence[bytes], ngram: int) -> tuple[np.ndarray, np.ndarray]:
    n_docs = len(texts)
    data = np.frombuffer(b" ".join(texts), dtype=np.uint8)  # a space between docs: never a word
    length = len(data)
    doc_starts = np.zeros(n_docs, dtype=np.int64)
    np.cumsum([len(t) + 1 for t in texts[:-1]], out=doc_starts[1:])
    is_word = data != _SPACE
    edges = np.diff(np.concatenate(([False], is_word, [False])).astype(np.int8))
    word_start = np.flatnonzero(edges == 1)
    word_end = np.flatnonzero(edges == -1)  # exclusive
    doc_of_word = np.searchsorted(doc_starts, word_start, side="right") - 1
    words_per_doc = np.bincount(doc_of_word, minlength=n_docs)
    first_word = np.concatenate(([0], np.cumsum(words_per_doc)[:-1]))
    # A document of w >= 1 words has max(w - n + 1, 1) shingles of min(w, n) words each.
    counts = np.where(words_per_doc > 0, np.maximum(words_per_doc - ngram + 1, 1), 0)
    doc_of_shingle = np.repeat(np.arange(n_docs), counts)
    offset_in_doc = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    start_word = first_word[doc_of_shingle] + offset_in_doc
    end_word = start_word + np.minimum(words_per_doc[doc_of_shingle], ngram) - 1
    starts, ends = word_start[start_word], word_end[end_word]
    p_pow, q_pow = _power_tables(length + 1)
    prefix = np.zeros(length + 1, dtype=np.uint64)
    np.cumsum(data.astype(np.uint64) * q_pow[:length], out=prefix[1:])
    h = (prefix[ends] - prefix[starts]) * p_pow[ends - 1]
    h ^= (ends - starts).astype(np.uint64)
    return (_fmix64(h) >> np.uint64(32)).astype(np.uint32), counts.astype(np.int32)


def poly_shingle_hashes(texts: Sequence[bytes], ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """(hash of every shingle, in document order; shingles per document) for normalised texts."""
    hashes, counts = [], []
    batch: list[bytes] = []
    size = 0
    for text in texts:
        if batch and size + len(text) > _BATCH_BYTES:
            h, c = _hash_batch(batch, ngram)
            hashes.append(h), counts.append(c)
            batch, size = [], 0
        batch.append(text)
        size += len(text) + 1
    if batch:
        h, c = _hash_batch(batch, ngram)
        hashes.append(h), counts.append(c)
    if not hashes:
        return np.empty(0, np.uint32), np.empty(0, np.int32)
    return np.concatenate(hashes), np.concatenate(counts)
