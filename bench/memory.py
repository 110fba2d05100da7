"""Peak memory of a map stage's worker does not grow with the number of shards. Prints ONE JSON object.

    .venv/bin/python bench/memory.py                   # langid over 10k vs 100k documents (1,000 per shard)
    .venv/bin/python bench/memory.py --quick           # 2k vs 20k documents (CI-sized)
    .venv/bin/python bench/memory.py --stage quality   # another map stage

Documents are built from the real article texts in ../shared/data/extraction (gold ``articleBody``,
each copy varied so no two are equal) and written as 02_extract shards with manifests. One fresh
worker process per size runs ``pipeline.run_stage_shard`` shard after shard, exactly as a pool
worker of ``crawl2model run`` does, and reports its peak resident set (``ru_maxrss``). A map stage
holds one shard at a time, so the peak should be the same for 10 shards and for 100: the goal is a
ratio (large / small) of at most 1.2.
"""

from __future__ import annotations

import os
import sys

# bench/ holds scripts named like standard modules (bench/tokenize.py); keep them off sys.path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "bench" / "out"
GOAL_RATIO = 1.2


def load_articles(extraction_dir: Path) -> list[tuple[str, str]]:
    """(url, gold article text) of every real page with a non-trivial article body."""
    articles = []
    for meta_path in sorted(extraction_dir.glob("*.json")):
        meta = json.loads(meta_path.read_text())
        text = (meta.get("articleBody") or "").strip()
        if len(text) > 200:
            articles.append((meta.get("url") or f"https://example.org/{meta_path.stem}", text))
    return articles


def build_input(run_dir: Path, n_docs: int, docs_per_shard: int, articles: list[tuple[str, str]]) -> int:
    """Write ``n_docs`` documents as 02_extract shards; returns the shard count."""
    import pyarrow as pa

    from pipeline_lib import shards
    from pipeline_lib.schema import doc_id
    from pipeline_lib.stage import StageResult, write_result

    fs = shards.filesystem(str(run_dir))
    out = str(run_dir / "02_extract")
    base = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    n_shards = (n_docs + docs_per_shard - 1) // docs_per_shard
    for s in range(n_shards):
        lo, hi = s * docs_per_shard, min(n_docs, (s + 1) * docs_per_shard)
        urls, texts = [], []
        for i in range(lo, hi):
            url, text = articles[i % len(articles)]
            paragraphs = text.split("\n")
            # Rotate paragraphs and tag the copy: every document is different, the language and
            # length distribution stay those of real articles.
            k = (i // len(articles)) % max(1, len(paragraphs))
            urls.append(f"{url}#copy-{i}")
            texts.append("\n".join(paragraphs[k:] + paragraphs[:k]) + f"\nReference {i}.")
        table = pa.table({"id": pa.array([doc_id(u) for u in urls], pa.string()), "url": pa.array(urls, pa.string()),
                          "text": pa.array(texts, pa.string()),
                          "fetched_at": pa.array([base] * len(urls), pa.timestamp("us", tz="UTC")),
                          "source": pa.array(["bench"] * len(urls), pa.string())})
        write_result(fs, out, shards.shard_name(s), "02_extract", table.num_rows, StageResult.keep_all(table),
                     "bench", [], 0.0)
    return n_shards


def link_subset(src_run: Path, dst_run: Path, n_shards: int) -> None:
    """A run dir whose 02_extract holds the first ``n_shards`` shards (hard links, no copies)."""
    src, dst = src_run / "02_extract", dst_run / "02_extract"
    (dst / "_manifests").mkdir(parents=True, exist_ok=True)
    for s in range(n_shards):
        name = f"part-{s:05d}"
        for rel in (f"{name}.parquet", f"_manifests/{name}.manifest.json"):
            os.link(src / rel, dst / rel)


def worker(run_dir: str, stage: str, n_shards: int) -> None:
    """One worker process: run the stage over every shard, print its peak RSS (KiB on Linux)."""
    from pipeline_lib import pipeline
    from pipeline_lib.config import load_config

    cfg = load_config(ROOT / "configs" / "small.yaml", overrides={"tokenize": {"source": "pretrained"}})
    ref = pipeline.ConfigRef.of(cfg)
    after_load = None
    t0 = time.perf_counter()
    rows = 0
    for s in range(n_shards):
        summary = pipeline.run_stage_shard(ref, run_dir, stage, f"part-{s:05d}")
        rows += summary["rows_in"]
        if after_load is None:  # the model is loaded and one shard processed
            after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_rss_mib": round(peak / 1024, 1), "after_first_shard_rss_mib": round(after_load / 1024, 1),
                      "rows": rows, "seconds": round(time.perf_counter() - t0, 2)}))


def run_worker(run_dir: Path, stage: str, n_shards: int) -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS"):
        env.setdefault(var, "1")  # as in a pool worker (workers._init_worker)
    env.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED / "tiktoken-cache"))
    proc = subprocess.run([sys.executable, __file__, "--worker", str(run_dir), "--stage", stage,
                           "--shards", str(n_shards)], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-4000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", default="langid", choices=["urlfilter", "langid", "quality", "pii", "tokens"])
    ap.add_argument("--small", type=int, default=10_000, help="documents in the small run")
    ap.add_argument("--large", type=int, default=100_000, help="documents in the large run")
    ap.add_argument("--docs-per-shard", type=int, default=1_000)
    ap.add_argument("--quick", action="store_true", help="2k vs 20k documents")
    ap.add_argument("--keep", action="store_true", help="keep the generated shards under bench/out/memory")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--shards", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.stage, args.shards)
        return
    if args.quick:
        args.small, args.large = 2_000, 20_000
    extraction = SHARED / "extraction"
    if not extraction.is_dir():
        print(json.dumps({"skipped": f"{extraction} not present"}))
        return
    articles = load_articles(extraction)
    work = OUT / "memory"
    shutil.rmtree(work, ignore_errors=True)
    try:
        t0 = time.perf_counter()
        n_large = build_input(work / "source", args.large, args.docs_per_shard, articles)
        n_small = (args.small + args.docs_per_shard - 1) // args.docs_per_shard
        build_seconds = time.perf_counter() - t0
        results = {}
        for label, n in (("small", n_small), ("large", n_large)):
            run_dir = work / label
            link_subset(work / "source", run_dir, n)
            results[label] = {"shards": n, **run_worker(run_dir, args.stage, n)}
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    ratio = results["large"]["peak_rss_mib"] / results["small"]["peak_rss_mib"]
    print(json.dumps({
        "bench": "memory", "stage": args.stage, "docs_per_shard": args.docs_per_shard,
        "small": results["small"], "large": results["large"],
        "peak_ratio_large_over_small": round(ratio, 3), "goal_ratio_at_most": GOAL_RATIO, "goal_met": ratio <= GOAL_RATIO,
        "input_build_seconds": round(build_seconds, 1), "source_articles": len(articles),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }, indent=1))


if __name__ == "__main__":
    main()
