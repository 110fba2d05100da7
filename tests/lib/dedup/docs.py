"""Synthetic documents for the dedup tests: random articles, light edits, input shards."""

from __future__ import annotations

import datetime as dt
import random

import pyarrow as pa

from pipeline_lib.schema import TIMESTAMP
from pipeline_lib.stage import StageResult, write_result

WORDS = ("river stone market garden window letter winter coffee planet engine music harbor silver "
         "forest doctor candle bridge orange pencil station thunder meadow castle rocket village").split()


def article(seed: int, words: int = 300) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) + str(rng.randint(0, 9)) * (rng.random() < 0.1) for _ in range(words))


def lightly_edited(text: str, seed: int, edits: int = 3) -> str:
    rng = random.Random(seed)
    words = text.split()
    for _ in range(edits):
        words[rng.randrange(len(words))] = "edited"
    return " ".join(words)


def when(day: int) -> dt.datetime:
    return dt.datetime(2026, 1, day, tzinfo=dt.timezone.utc)


def docs_table(rows: list[tuple[str, str, int]]) -> pa.Table:
    return pa.table({"id": [r[0] for r in rows], "url": [f"http://h/{r[0]}" for r in rows],
                     "text": [r[1] for r in rows], "fetched_at": pa.array([when(r[2]) for r in rows], TIMESTAMP),
                     "source": ["test"] * len(rows), "extra_col": list(range(len(rows)))})


def write_input(fs, stage_dir: str, name: str, table: pa.Table) -> None:
    write_result(fs, stage_dir, name, "04_quality", table.num_rows, StageResult.keep_all(table), "q", [], 0.0)
