"""Document quality filters (Gopher, C4, FineWeb) sharing one tokenisation per document.

Each filter reads a ``Doc`` (text, its lines and its words, computed once, lazily, and shared by
the whole chain), writes its signals into a dict (they become ``q_*`` columns, so thresholds can
be changed later without recomputation) and returns a reason or None. A filter may rewrite the
text (C4's line cleanup); the Doc then drops its cached words and lines.

Words are ``\\w+`` runs joined by inner apostrophes (``don't`` is one word): a single regex pass,
where datatrove runs spaCy's tokenizer (tens of milliseconds per document) for the same signals.
Punctuation is not a word, so "non-symbol words" are simply all words.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections import Counter
from typing import Any, ClassVar

import pyarrow as pa

WORD_RE = re.compile(r"\w+(?:['’]\w+)*")

# Endings of a line of prose: sentence terminals (ASCII, CJK, Devanagari, Arabic, Armenian...), also
# followed by a closing quote or bracket. Colons and bare quotes are not: headings end with them.
_TERMINALS = ".!?…。！？｡।॥؟۔։"
TERMINAL_PUNCT = tuple(_TERMINALS) + tuple(t + c for t in ".!?…" for c in "\"'”’»)]")


class Doc:
    """One document's text with lazily computed, cached views shared across the filter chain."""

    __slots__ = ("text", "_words", "_lines", "changed")

    def __init__(self, text: str):
        self.text = text
        self._words: list[str] | None = None
        self._lines: list[str] | None = None
        self.changed = False

    @property
    def words(self) -> list[str]:
        if self._words is None:
            self._words = WORD_RE.findall(self.text)
        return self._words

    @property
    def lines(self) -> list[str]:
        """Lines split on ``\\n`` (blank lines included)."""
        if self._lines is None:
            self._lines = self.text.split("\n")
        return self._lines

    def set_text(self, text: str) -> None:
        if text != self.text:
            self.text = text
            self._words = self._lines = None
            self.changed = True


def duplicates(items: list[str]) -> tuple[int, int]:
    """(number of items equal to an earlier one, their total characters), counted in C by Counter."""
    counts = Counter(items)
    n_dup = len(items) - len(counts)
    if not n_dup:
        return 0, 0
    return n_dup, sum(len(item) * (c - 1) for item, c in counts.items() if c > 1)


class QualityFilter(ABC):
    """One filter of the chain. ``columns`` are the signals it writes (name -> Arrow type)."""

    name: ClassVar[str]
    columns: ClassVar[dict[str, pa.DataType]]

    def __init__(self, params: Any):
        self.params = params

    @abstractmethod
    def apply(self, doc: Doc, signals: dict[str, Any], counters: Counter) -> str | None:
        """Fill ``signals``, maybe rewrite ``doc``; return a reject reason or None to keep."""


def over(value: float, limit: float | None) -> bool:
    return limit is not None and value > limit


def under(value: float, limit: float | None) -> bool:
    return limit is not None and value < limit


def build_filter(spec: Any) -> QualityFilter:
    """The filter object for one config entry (``spec.name`` picks the class)."""
    from pipeline_lib.filters.c4 import C4
    from pipeline_lib.filters.fineweb import FineWeb
    from pipeline_lib.filters.gopher import GopherQuality, GopherRepetition

    classes = {c.name: c for c in (GopherRepetition, GopherQuality, C4, FineWeb)}
    return classes[spec.name](spec)
