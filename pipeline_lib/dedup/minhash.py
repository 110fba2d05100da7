"""Vectorised MinHash signatures with datasketch's semantics (``MinHash``, scheme affine32).

datasketch's ``MinHash.update`` hashes one shingle to 32 bits (SHA-1 by default), mixes it with
the MurmurHash3 32-bit finaliser, and applies ``num_perm`` affine permutations
``a * h + b mod 2**32`` before taking the running minimum. Doing that per shingle costs a
handful of small NumPy calls each; here the shingle hashes of many documents are computed in one
go (``sha1``: one SHA-1 call per shingle; ``poly64``: all in NumPy, see shingle_hash.py) and the
permutations run as one (num_perm x shingles) matrix per chunk, reduced per document with
``np.minimum.reduceat``. With the same shingle hash, the signatures are exactly datasketch's
(tests check both: the default hash, and ``hashfunc=poly_hash32``).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Sequence

import numpy as np

from pipeline_lib.dedup.shingle_hash import poly_shingle_hashes

EMPTY_HASH = np.uint32(0xFFFFFFFF)  # the value of an untouched datasketch MinHash slot
_CHUNK_ROWS = 1 << 12  # shingles per matrix: 4k x 128 perms x 4 B = 2 MiB, stays in cache
_M1, _M2 = np.uint32(0x85EBCA6B), np.uint32(0xC2B2AE35)  # MurmurHash3 fmix32 constants


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) as uint32 arrays: the draws datasketch's affine32 ``MinHash`` makes for this seed.

    Drawn here rather than read off a ``MinHash`` so a worker does not pay datasketch's import
    (about a second); a test checks they equal datasketch's.
    """
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)  # odd: a bijection
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    a.setflags(write=False)
    b.setflags(write=False)
    return a, b


def fmix32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint32(16))
    h = h * _M1
    h = h ^ (h >> np.uint32(13))
    h = h * _M2
    return h ^ (h >> np.uint32(16))


def signatures_from_hashes(hashes: np.ndarray, doc_of_row: np.ndarray, n_docs: int,
                           num_perm: int, seed: int) -> np.ndarray:
    """Signatures (n_docs x num_perm uint32) from shingle hashes grouped by document.

    ``doc_of_row`` is non-decreasing (all shingles of a document are contiguous). Documents
    with no shingle keep the empty signature (all 0xFFFFFFFF), like an empty datasketch MinHash.
    """
    a, b = permutations(num_perm, seed)
    sig = np.full((n_docs, num_perm), EMPTY_HASH, dtype=np.uint32)
    mixed = fmix32(hashes.astype(np.uint32, copy=False))
    # Permutations x shingles (not the other way round): reduceat along the contiguous last
    # axis is ~4x faster than along axis 0.
    buffer = np.empty((num_perm, min(len(mixed), _CHUNK_ROWS)), dtype=np.uint32)
    a_col, b_col = a[:, None], b[:, None]
    for start in range(0, len(mixed), _CHUNK_ROWS):
        h = mixed[start:start + _CHUNK_ROWS]
        docs = doc_of_row[start:start + _CHUNK_ROWS]
        permuted = buffer[:, :len(h)]
        np.multiply(a_col, h[None, :], out=permuted)  # wraps mod 2**32, as datasketch does
        np.add(permuted, b_col, out=permuted)
        firsts = np.flatnonzero(np.r_[True, docs[1:] != docs[:-1]])
        mins = np.minimum.reduceat(permuted, firsts, axis=1).T
        ids = docs[firsts]
        # A document can straddle two chunks, so merge with what an earlier chunk found.
        sig[ids] = np.minimum(sig[ids], mins)
    return sig


def compute_signatures(normalized: Sequence[bytes], ngram: int, num_perm: int, seed: int,
                       shingle_hash: str = "sha1") -> tuple[np.ndarray, np.ndarray]:
    """(signatures n x num_perm uint32, shingle counts n int32) for normalised texts (UTF-8).

    ``shingle_hash="sha1"`` gives datasketch's default signatures bit for bit; ``"poly64"``
    those of ``MinHash(hashfunc=poly_hash32)``, hashing all shingles in NumPy (see shingle_hash).
    """
    if shingle_hash == "poly64":
        hashes, counts = poly_shingle_hashes(normalized, ngram)
    elif shingle_hash == "sha1":
        hashes, counts = _sha1_shingle_hashes(normalized, ngram)
    else:
        raise ValueError(f"unknown shingle_hash {shingle_hash!r}; expected 'sha1' or 'poly64'")
    doc_of_row = np.repeat(np.arange(len(normalized), dtype=np.int64), counts)
    return signatures_from_hashes(hashes, doc_of_row, len(normalized), num_perm, seed), counts


def _sha1_shingle_hashes(normalized: Sequence[bytes], ngram: int) -> tuple[np.ndarray, np.ndarray]:
    counts = np.zeros(len(normalized), dtype=np.int32)
    sha1 = hashlib.sha1
    digests = []
    for i, text in enumerate(normalized):
        words = text.split()
        count = len(words) - ngram + 1
        if count > 1:  # the shingles of normalize.word_shingles, hashed as they are built
            shingles = map(b" ".join, zip(*(words[j:j + count] for j in range(ngram))))
            digests.append(b"".join([sha1(s).digest() for s in shingles]))
            counts[i] = count
        elif words:
            digests.append(sha1(b" ".join(words)).digest())
            counts[i] = 1
    # A SHA-1 digest is 20 bytes = five little-endian uint32 words; sha1_hash32 is the first.
    return np.frombuffer(b"".join(digests), dtype="<u4").reshape(-1, 5)[:, 0].copy(), counts


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
    """Row-wise fraction of equal slots: datasketch's ``MinHash.jaccard`` for each pair of rows."""
    return (sig_a == sig_b).mean(axis=-1)
