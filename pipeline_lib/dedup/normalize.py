"""Text normalisation and word shingles shared by exact and near-duplicate detection.

Two copies of a page that differ only in case, punctuation, digits or spacing should look the
same to dedup, so both the exact hash and the MinHash shingles are taken over the normalised
text: NFKC, lowercase, every run of digits -> "0", apostrophes dropped ("don't" == "dont"),
other punctuation and symbols -> a space, whitespace collapsed.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

# Bump when the normalisation changes: persistent index entries of another version never match.
NORMALIZATION_VERSION = 1

_APOSTROPHES = re.compile(r"['\u2019\u02bc`]")
_DIGITS = re.compile(r"\d+")
# \w without "_" keeps letters and digits of every script; everything else separates words.
_NON_WORD = re.compile(r"[\W_]+")


def normalize_text(text: str | None) -> str:
    if not text:
        return ""
    text = unicodedata.normalize("NFKC", text).lower()
    text = _APOSTROPHES.sub("", text)
    text = _DIGITS.sub("0", text)
    return _NON_WORD.sub(" ", text).strip()


def exact_hash(normalized: str) -> int:
    """A 64-bit hash of the normalised text (unsigned); equal texts, equal hashes."""
    digest = hashlib.blake2b(normalized.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def word_shingles(normalized: str, ngram: int) -> list[str]:
    """Word n-grams joined by one space; a text shorter than n words is one shingle (if any)."""
    words = normalized.split()
    if not words:
        return []
    if len(words) <= ngram:
        return [" ".join(words)]
    return [" ".join(words[i:i + ngram]) for i in range(len(words) - ngram + 1)]
