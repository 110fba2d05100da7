"""Quality stage: FineWeb's heuristic filter chain (Gopher repetition, Gopher quality, C4, FineWeb).

The chain is data (``quality.filters`` in the config: order and thresholds). Each document is
tokenised once and the word list is shared by every filter; each filter's signals become ``q_*``
columns (null for filters after the one that rejected a document), so a threshold can be changed
later without recomputing. C4's line cleanup rewrites ``text`` of kept documents; rejected rows
keep their input text. A null or blank ``text`` is rejected as ``quality_no_text``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pyarrow as pa

from pipeline_lib.config import PipelineConfig
from pipeline_lib.filters import Doc, QualityFilter, build_filter
from pipeline_lib.stage import Stage, StageResult, put_column


class QualityChain:
    """The configured filters in order; ``run(text)`` gives (reason, signals, new text)."""

    def __init__(self, filters: list[QualityFilter]):
        self.filters = filters
        self.columns: dict[str, pa.DataType] = {}
        for f in filters:
            self.columns.update(f.columns)

    @classmethod
    def from_config(cls, cfg: PipelineConfig) -> "QualityChain":
        return cls([build_filter(spec) for spec in cfg.quality.filters])

    def run(self, text: Any, counters: Counter) -> tuple[str | None, dict[str, Any], str | None]:
        signals: dict[str, Any] = {}
        if not isinstance(text, str) or not text.strip():
            return "quality_no_text", signals, None
        doc = Doc(text)
        for f in self.filters:
            reason = f.apply(doc, signals, counters)
            if reason:
                return reason, signals, None
        return None, signals, doc.text if doc.changed else None


class QualityStage(Stage):
    name = "quality"
    section = "quality"
    version = 3  # 2: tokens keep spaCy's abbreviations and combining vowel signs whole
    # 3: datatrove's words (its symbol set), letters (isalpha) and sentence terminals (Unicode's)

    def __init__(self, cfg: PipelineConfig):
        super().__init__(cfg)
        self.chain = QualityChain.from_config(cfg)

    def process(self, table: pa.Table) -> StageResult:
        if not self.cfg.quality.enabled:
            return StageResult.keep_all(table)
        if "text" not in table.column_names:
            return StageResult.split(table, ["quality_no_text"] * table.num_rows)
        texts = table.column("text").to_pylist()
        counters: Counter = Counter()
        reasons: list[str | None] = []
        values: dict[str, list[Any]] = {name: [] for name in self.chain.columns}
        new_texts = list(texts)
        for i, text in enumerate(texts):
            reason, signals, cleaned = self.chain.run(text, counters)
            reasons.append(reason)
            if cleaned is not None:
                new_texts[i] = cleaned
            for name, column in values.items():
                column.append(signals.get(name))

        out = table
        if new_texts != texts:
            out = put_column(out, "text", pa.array(new_texts, out.schema.field("text").type))
        for name, dtype in self.chain.columns.items():
            out = put_column(out, name, pa.array(values[name], dtype))
        return StageResult.split(out, reasons, counters=dict(counters))
