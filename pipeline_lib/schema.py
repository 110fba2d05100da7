"""Arrow schemas and column names shared by the stages.

Page shards (00_crawl) hold fetched HTML; document shards (01_urlfilter onwards) hold at least
``id``, ``url`` and ``text`` (``text`` appears at 02_extract). Stages add score columns and keep
the columns they were given, so a later threshold change needs no recomputation.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa

REJECT_REASON = "reject_reason"
TIMESTAMP = pa.timestamp("us", tz="UTC")

STAGES = ["00_crawl", "01_urlfilter", "02_extract", "03_langid", "04_quality", "05_dedup", "06_pii", "07_tokens", "08_train"]
STAGE_DIRS = {s.split("_", 1)[1]: s for s in STAGES}  # "extract" -> "02_extract"
TRAIN_DONE_FILE = "done.json"  # in 08_train, written last by training: a rerun or a backfill skips it

PAGE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("url", pa.string()),
        ("final_url", pa.string()),
        ("status", pa.int32()),
        ("content_type", pa.string()),
        ("html", pa.string()),
        ("fetched_at", TIMESTAMP),
        ("depth", pa.int32()),
        ("source", pa.string()),
        ("headers", pa.string()),  # JSON object of the response headers
    ]
)

# What a failed fetch looks like in 00_crawl/_rejected.
PAGE_REJECT_SCHEMA = pa.schema(
    [("id", pa.string()), ("url", pa.string()), ("status", pa.int32()), ("depth", pa.int32()),
     ("fetched_at", TIMESTAMP), ("source", pa.string()), (REJECT_REASON, pa.string()), ("detail", pa.string())]
)



def doc_id(*parts: str) -> str:
    """Deterministic document id from its identity (URL, WARC record id...): 20 hex chars."""
    h = hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
    return h[:20]
