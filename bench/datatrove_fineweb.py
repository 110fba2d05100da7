"""datatrove's FineWeb recipe on a folder of WARC files; run with the datatrove venv's python.

    bench/out/datatrove-venv/bin/python bench/datatrove_fineweb.py --warc-dir DIR --out DIR \
        --tokenizer bench/out/gpt2-tokenizer.json --workers 2

Started by bench/e2e.py (which also builds the venv, the WARC files and the tokenizer file). The
steps follow FineWeb's published pipeline (datatrove examples/fineweb.py): WarcReader -> URLFilter ->
Trafilatura(favour_precision) -> LanguageFilter(en, 0.65) -> GopherRepetition -> GopherQuality ->
C4Quality(filter_no_terminal_punct=False) -> FineWebQuality -> JsonlWriter; MinHash in its four
stages (signatures, buckets, cluster, filter; FineWeb's 14 buckets x 8 hashes, 64-bit, 5-grams);
then PIIFormatter -> DocumentTokenizer (GPT-2 vocabulary, EOS after each document). One task per WARC
file; ``--workers`` processes. Prints one JSON object: seconds per stage and document counts.
"""

from __future__ import annotations

import os
import sys

# bench/ holds scripts named like standard modules (bench/tokenize.py); keep them off sys.path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--warc-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--extract-timeout", type=float, default=10.0)
    args = ap.parse_args()

    from datatrove.executor.local import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter,
                                          MinhashDedupSignature)
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter, GopherQualityFilter,
                                            GopherRepetitionFilter, LanguageFilter, URLFilter)
    from datatrove.pipeline.formatters import PIIFormatter
    from datatrove.pipeline.readers import JsonlReader, WarcReader
    from datatrove.pipeline.tokens import DocumentTokenizer
    from datatrove.pipeline.writers.jsonl import JsonlWriter
    from datatrove.utils.hashing import HashConfig

    out = args.out
    shutil.rmtree(out, ignore_errors=True)
    n_files = len(glob.glob(os.path.join(args.warc_dir, "*.warc.gz")))
    minhash = MinhashConfig(hash_config=HashConfig(precision=64), num_buckets=14, hashes_per_bucket=8, n_grams=5)
    common = dict(workers=args.workers, skip_completed=False)
    seconds: dict[str, float] = {}

    def run(name: str, pipeline: list, tasks: int) -> None:
        t0 = time.perf_counter()
        LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, logging_dir=f"{out}/logs/{name}", **common).run()
        seconds[name] = round(time.perf_counter() - t0, 3)

    from tldextract import TLDExtract

    url_filter = URLFilter()
    # Its default TLDExtract fetches the public-suffix list over the network; use the bundled snapshot,
    # as crawl2model does (no egress, no timeouts on an offline machine).
    url_filter.tldextractor = TLDExtract(suffix_list_urls=())
    t_all = time.perf_counter()
    run("filtering", [
        WarcReader(args.warc_dir, glob_pattern="*.warc.gz", default_metadata={"dump": "bench"}),
        url_filter,
        Trafilatura(favour_precision=True, timeout=args.extract_timeout),
        LanguageFilter(languages=["en"], language_threshold=0.65),
        GopherRepetitionFilter(),
        GopherQualityFilter(),
        C4QualityFilter(filter_no_terminal_punct=False),
        FineWebQualityFilter(),
        JsonlWriter(f"{out}/filtered"),
    ], tasks=n_files)
    run("minhash_signatures", [JsonlReader(f"{out}/filtered"),
                               MinhashDedupSignature(output_folder=f"{out}/signatures", config=minhash)], tasks=n_files)
    run("minhash_buckets", [MinhashDedupBuckets(input_folder=f"{out}/signatures", output_folder=f"{out}/buckets",
                                                config=minhash)], tasks=minhash.num_buckets)
    run("minhash_cluster", [MinhashDedupCluster(input_folder=f"{out}/buckets", output_folder=f"{out}/remove_ids",
                                                config=minhash)], tasks=1)
    run("minhash_filter_pii_tokens", [
        JsonlReader(f"{out}/filtered"),
        MinhashDedupFilter(input_folder=f"{out}/remove_ids"),
        PIIFormatter(),
        DocumentTokenizer(output_folder=f"{out}/tokens", tokenizer_name_or_path=args.tokenizer,
                          eos_token="<|endoftext|>", shuffle_documents=False),
    ], tasks=n_files)
    wall = time.perf_counter() - t_all

    def stats(name: str) -> list[dict]:
        path = f"{out}/logs/{name}/stats.json"
        return json.load(open(path)) if os.path.exists(path) else []

    def value(step: dict, key: str, field: str | None = None) -> int:
        v = step.get("stats", {}).get(key, 0)
        return int(v.get(field or "total", 0) if isinstance(v, dict) else v)

    filtering = stats("filtering")
    final = stats("minhash_filter_pii_tokens")
    reader_docs = value(filtering[0], "documents") if filtering else 0
    kept_filtering = value(filtering[-1], "total") if filtering else 0
    dedup_step = next((s for s in final if "MinHash" in s.get("name", "")), {})
    kept_final = value(dedup_step, "forwarded")
    tokens = value(final[-1], "tokens") if final else 0
    # Task seconds per pipeline step (summed over tasks), from datatrove's own stats: where its time goes.
    step_seconds: dict[str, float] = {}
    for name in ("filtering", "minhash_signatures", "minhash_buckets", "minhash_cluster", "minhash_filter_pii_tokens"):
        for step in stats(name):
            t = step.get("time_stats") or {}
            label = "".join(c for c in step.get("name", "?").split(":")[-1] if c.isascii()).strip()
            step_seconds[f"{name}/{label}"] = round(t.get("total", 0.0) if isinstance(t, dict) else float(t), 2)
    print(json.dumps({"seconds": seconds, "step_task_seconds": step_seconds, "wall_seconds": round(wall, 3),
                      "warc_files": n_files,
                      "documents_read": reader_docs, "kept_after_filters": kept_filtering,
                      "kept_after_dedup": kept_final, "tokens": tokens}))


if __name__ == "__main__":
    main()
