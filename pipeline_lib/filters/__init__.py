"""Document quality filters (Gopher, C4, FineWeb) sharing one tokenisation per document.

Each filter reads a ``Doc`` (text, its lines and its tokens, computed once, lazily, and shared by
the whole chain), writes its signals into a dict (they become ``q_*`` columns, so thresholds can
be changed later without recomputation) and returns a reason or None. A filter may rewrite the
text (C4's line cleanup); the Doc then drops its cached views.

Tokens come from one regex pass, where datatrove runs spaCy's tokenizer (tens of milliseconds per
document) for the same signals. They imitate spaCy's English tokens closely enough for FineWeb's
thresholds (on the 91 real articles in ../shared/data the alpha-word fraction is within 0.005 of
spaCy's on average): ``\w+`` runs, kept whole across separators inside numbers (``1,000.5``,
``10:30``, ``2–3``, ``COVID-19``) and dots before a lowercase letter (``cu.ft``); clitics split
off (``it`` + ``’s``); initials and dotted abbreviations (``A.``, ``U.S.``), spaCy's abbreviation
exceptions (``Mr.``, ``St.``, ``Jan.``: ABBREVIATIONS) and URLs are one token; combining vowel
signs stay inside their word (``राजेश``); every other punctuation character is a token, except
``...`` and dash runs (``--``). "Words" are the tokens with a character outside datatrove's symbol
set (its non-symbol words; punctuation.py).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections import Counter
from typing import Any, ClassVar

import pyarrow as pa

from pipeline_lib.filters.punctuation import SENTENCE_TERMINALS, SYMBOLS
from pipeline_lib.unicode_marks import MARKS

# Abbreviations spaCy's English tokenizer keeps whole with their dot (its tokenizer exceptions):
# titles, company suffixes, months. Each is one word token here too, and its dot ends no sentence.
ABBREVIATIONS = ("Mr", "Mrs", "Ms", "Dr", "St", "Jr", "Sr", "Prof", "Gen", "Gov", "Sen", "Rep", "Rev", "Adm",
                 "Inc", "Ltd", "Co", "co", "Corp", "Bros", "Messrs", "Mt", "vs", "Jan", "Feb", "Mar", "Apr", "Jun",
                 "Jul", "Aug", "Sep", "Sept", "Oct", "Nov", "Dec")
_ABBREV = "|".join(sorted(ABBREVIATIONS, key=len, reverse=True))
_W = rf"[\w{MARKS}]"  # a letter or digit of any script, combining vowel signs included

TOKEN_RE = re.compile(
    r"(?:https?://|www\.)[^\s<>\"']+"  # a URL
    rf"|(?<![\w.])(?:{_ABBREV})\.(?![\w.])"  # Mr., St., Jan.
    r"|(?:[A-Za-z]\.)+(?![\w.])"  # initials, U.S., e.g.
    rf"|{_W}+(?:[.,:]\d+|\.[a-z]{_W}*|–\d{_W}*|(?<=[^\W\d_])-\d{_W}*)*"  # a word or number: 1,000.5 2–3 COVID-19
    rf"|(?<=\w)['’]{_W}+"  # a clitic: 's, 'll, 't
    r"|(?<![\w'’])['’](?:em|cause)(?![\w'’])"  # elisions spaCy keeps whole
    rf"|\.\.\.|-{{2,}}|[^\w\s{MARKS}]"  # punctuation; "..." and "--" are one token each
)

# Endings of a line of prose: the sentence terminals of every script (punctuation.py), also when
# a closing quote or bracket follows a full stop, ? or ! (datatrove counts those lines as open;
# we do not). Colons, bare quotes and ellipses are not: headings and teasers end with them.
TERMINAL_PUNCT = tuple(SENTENCE_TERMINALS) + tuple(t + c for t in ".!?" for c in "\"'”’»)]")
_is_symbol_run = SYMBOLS.issuperset


class Doc:
    """One document's text with lazily computed, cached views shared across the filter chain."""

    __slots__ = ("text", "_tokens", "_words", "_lines", "_n_tokens", "changed")

    def __init__(self, text: str):
        self.text = text
        self._tokens: list[str] | None = None
        self._words: list[str] | None = None
        self._lines: list[str] | None = None
        self._n_tokens: int | None = None
        self.changed = False

    @property
    def tokens(self) -> list[str]:
        """Words and punctuation, in order (what datatrove's word splitter returns)."""
        if self._tokens is None:
            self._tokens = TOKEN_RE.findall(self.text)
        return self._tokens

    @property
    def n_tokens(self) -> int:
        if self._n_tokens is None:
            self._n_tokens = len(self.tokens)
        return self._n_tokens

    @property
    def words(self) -> list[str]:
        """Tokens that are not made of symbols only (datatrove's non-symbol words: ``____`` is not a
        word, a bullet or an emoji is)."""
        if self._words is None:
            self._words = [t for t in self.tokens if not _is_symbol_run(t)]
        return self._words

    @property
    def lines(self) -> list[str]:
        """Lines split on ``\\n`` (blank lines included)."""
        if self._lines is None:
            self._lines = self.text.split("\n")
        return self._lines

    def set_text(self, text: str, n_tokens: int | None = None) -> None:
        """Replace the text; ``n_tokens``, when the caller knows it, spares a re-tokenisation for
        filters that only need the count."""
        if text != self.text:
            self.text = text
            self._tokens = self._words = self._lines = None
            self._n_tokens = n_tokens
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
