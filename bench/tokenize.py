"""Tokenization throughput: the TokenizeStage against raw tiktoken ``encode_ordinary_batch``.

    .venv/bin/python bench/tokenize.py [--encoding gpt2] [--threads 2] [--repeat 5] [--copies 4]

Both sides get the same documents and the same thread count. The raw side only encodes (its
output is Python lists); the stage also reads the Arrow text column, counts bytes, appends EOT and
builds the list<uint16|uint32> Arrow column that the shard stores. Best of ``--repeat`` runs,
interleaved. Prints one JSON object; goal: ratio (stage MB/s / raw MB/s) >= 0.8.

Documents: ../shared/data/corpus/tinyshakespeare_input.txt cut into ~4 KB documents plus the
extraction benchmark's gold article texts, repeated ``--copies`` times.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's folder comes first on sys.path, and its name would shadow the
# standard library's `tokenize` (which `inspect`/`linecache` import): drop that folder first.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from crawl2model.env import configure_environment  # noqa: E402

configure_environment()

import pyarrow as pa  # noqa: E402

from pipeline_lib.config import parse_config  # noqa: E402
from pipeline_lib.tokenization import TokenizeStage, load_pretrained  # noqa: E402

SHARED = REPO.parent / "shared" / "data"


def load_documents(copies: int) -> list[str]:
    corpus = SHARED / "corpus" / "tinyshakespeare_input.txt"
    if not corpus.is_file():
        sys.exit(f"bench needs {corpus} (the shared development data)")
    docs, current = [], []
    size = 0
    for para in corpus.read_text(encoding="utf-8").split("\n\n"):
        current.append(para)
        size += len(para)
        if size >= 4096:
            docs.append("\n\n".join(current))
            current, size = [], 0
    if current:
        docs.append("\n\n".join(current))
    for gold in sorted((SHARED / "extraction").glob("*.json")):
        body = json.loads(gold.read_text(encoding="utf-8")).get("articleBody")
        if body:
            docs.append(body)
    return docs * copies


def best_seconds(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoding", default="gpt2")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--copies", type=int, default=4)
    args = ap.parse_args()

    docs = load_documents(args.copies)
    table = pa.table({"id": [f"d{i}" for i in range(len(docs))], "text": docs})
    mb = sum(len(d.encode("utf-8")) for d in docs) / 1e6
    enc = load_pretrained(args.encoding)
    stage = TokenizeStage(parse_config({"tokenize": {"encoding": args.encoding, "threads": args.threads}}))
    stage.process(table.slice(0, 10))  # load once outside the timing

    raw_s = stage_s = float("inf")
    for _ in range(args.repeat):  # interleaved so machine noise hits both sides alike
        raw_s = min(raw_s, best_seconds(lambda: enc.encode_ordinary_batch(docs, num_threads=args.threads), 1))
        stage_s = min(stage_s, best_seconds(lambda: stage.process(table), 1))
    n_tokens = sum(len(t) for t in enc.encode_ordinary_batch(docs, num_threads=args.threads))
    print(json.dumps({
        "encoding": args.encoding, "threads": args.threads, "documents": len(docs), "mb": round(mb, 3),
        "tokens": n_tokens, "raw_encode_ordinary_batch_mb_s": round(mb / raw_s, 3),
        "stage_mb_s": round(mb / stage_s, 3), "ratio": round(raw_s / stage_s, 3), "goal_ratio": 0.8,
    }))


if __name__ == "__main__":
    main()
