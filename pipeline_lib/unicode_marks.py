"""Combining marks (Unicode categories Mn, Mc, Me) as the body of a regex character class.

Python's ``\\w`` does not match them, so a pattern built on ``\\w`` alone cuts Devanagari, Bengali,
Tamil, Thai or vowelled Arabic words apart at every vowel sign (``राजेश`` -> ``र ा ज े श``).
Patterns that mean "a letter of any script" use ``[\\w{MARKS}]``. Taken from the running Python's
Unicode database (``unicodedata``), Basic Multilingual Plane only (~12 ms at import): it holds the
marks of every script fastText's language identifier knows, and a class with supplementary-plane
ranges makes ``re`` match every character about twice as slowly.
"""

from __future__ import annotations

import unicodedata

_CATEGORIES = frozenset({"Mn", "Mc", "Me"})


def _ranges(lo: int, hi: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    start = None
    for cp in range(lo, hi + 1):
        if unicodedata.category(chr(cp)) in _CATEGORIES:
            if start is None:
                start = cp
        elif start is not None:
            out.append((start, cp - 1))
            start = None
    if start is not None:
        out.append((start, hi))
    return out


def _escape(cp: int) -> str:
    return f"\\u{cp:04x}" if cp <= 0xFFFF else f"\\U{cp:08x}"


RANGES = _ranges(0x300, 0xFFFF)
MARKS = "".join(_escape(a) if a == b else f"{_escape(a)}-{_escape(b)}" for a, b in RANGES)
