"""End to end, WARC to token shards: crawl2model against datatrove's FineWeb recipe. Prints ONE JSON object.

    .venv/bin/python bench/e2e.py                     # 2,000 records, 1 and 2 workers, both tools
    .venv/bin/python bench/e2e.py --records 600 --workers 2   # quicker
    .venv/bin/python bench/e2e.py --skip-datatrove    # ours only (no venv needed)

Input: WARC files built from the real pages in ../shared/data/extraction (warcio, gzip, one response
record per page, ``--files`` files so both tools can run one task per file). Each record is a real
page with paragraphs of a *different* real article inserted into its body, so the documents are
distinct (pairs of articles) while every page keeps its real markup and boilerplate.

Ours: ``crawl2model run`` (embedded Prefect, spawned worker pool) on a config with ``source.kind:
warc``, GPT-2 tiktoken vocabulary, training off; and the same pipeline_lib functions called
directly, in the same order, through the same worker pool without Prefect (``--direct``), which
measures the orchestration overhead: (prefect wall - direct wall) / prefect wall. Per-stage task
seconds come from the manifests.

Theirs: datatrove (pinned, in bench/out/datatrove-venv, built by bench/datatrove_env.py) running
bench/datatrove_fineweb.py: FineWeb's steps in its LocalPipelineExecutor with the same worker count,
the same GPT-2 vocabulary (converted from tiktoken's files) and the same extraction timeout.

documents/s = input WARC records / wall seconds (process start to last token shard).
"""

from __future__ import annotations

import os
import sys

# bench/ holds scripts named like standard modules (bench/tokenize.py); keep them off sys.path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

import argparse  # noqa: E402
import contextlib  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from io import BytesIO  # noqa: E402
from pathlib import Path  # noqa: E402

import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "bench" / "out" / "e2e"
GOAL_RATIO, GOAL_OVERHEAD = 1.5, 0.05
SHARD_STAGES = ["00_crawl", "01_urlfilter", "02_extract", "03_langid", "04_quality", "05_dedup/_signatures",
                "05_dedup/_clusters", "05_dedup", "06_pii", "07_tokens"]


def _bench_module(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", Path(_HERE) / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---------------------------------------------------------------- input
def load_pages(extraction: Path) -> list[dict]:
    pages = []
    for html_path in sorted(extraction.glob("*.html")):
        meta = json.loads(html_path.with_suffix(".json").read_text())
        body = (meta.get("articleBody") or "").strip()
        pages.append({"url": meta.get("url") or f"https://example.org/{html_path.stem}",
                      "html": html_path.read_bytes(), "paragraphs": [p for p in body.split("\n") if p.strip()]})
    return pages


def page_record(pages: list[dict], i: int) -> tuple[str, bytes]:
    """Record i: page a's real HTML with paragraphs of article b (b != a) inserted into its body."""
    n = len(pages)
    a = i % n
    b = (a + 1 + (i // n) % (n - 1)) % n
    host_page, guest = pages[a], pages[b]
    insert = "".join(f"<p>{p}</p>" for p in guest["paragraphs"][: max(3, len(guest["paragraphs"]) // 2)])
    html = host_page["html"]
    at = html.find(b"<p")
    if at < 0:
        at = max(html.find(b"</body>"), 0)
    body = html[:at] + insert.encode("utf-8") + html[at:]
    url = host_page["url"].split("#")[0].rstrip("/") + f"/r{i}"
    return url, body


def build_warcs(out_dir: Path, records: int, files: int, pages: list[dict]) -> list[Path]:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    paths = [out_dir / f"part-{k:03d}.warc.gz" for k in range(files)]
    handles = [open(p, "wb") for p in paths]
    writers = [WARCWriter(h, gzip=True) for h in handles]
    base = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    rng = random.Random(7)
    try:
        for i in range(records):
            url, body = page_record(pages, i)
            http = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                               ("Content-Length", str(len(body)))], protocol="HTTP/1.1")
            w = writers[i % files]
            date = (base + dt.timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
            rec = w.create_warc_record(url, "response", payload=BytesIO(body), http_headers=http,
                                       warc_headers_dict={"WARC-Date": date,
                                                          "WARC-Record-ID": f"<urn:uuid:{uuid.UUID(int=rng.getrandbits(128))}>",
                                                          "WARC-Identified-Payload-Type": "text/html"})
            w.write_record(rec)
    finally:
        for h in handles:
            h.close()
    return paths


# ---------------------------------------------------------------- ours
def write_config(path: Path, warcs: list[Path], workers: int, data_root: Path, records_per_shard: int) -> Path:
    cfg = {
        "run": {"name": "e2e", "partition": f"w{workers}", "data_root": str(data_root), "workers": workers},
        "source": {"kind": "warc", "warc_paths": [str(p) for p in warcs], "records_per_shard": records_per_shard},
        "extract": {"timeout_seconds": 10.0},
        "tokenize": {"source": "pretrained", "encoding": "gpt2"},
        "train": {"enabled": False},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


PREFECT_API_URL: str | None = None  # set by --prefect-server: runs report to a long-lived server


def ours_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PREFECT_HOME"] = str(tmp / "prefect-home")
    env.pop("PREFECT_API_URL", None)
    if PREFECT_API_URL:
        env["PREFECT_API_URL"] = PREFECT_API_URL
    env.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED / "tiktoken-cache"))
    env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")  # a busy machine starts it slowly
    return env


@contextlib.contextmanager
def prefect_server(tmp: Path):
    """A real `prefect server start` on loopback for the length of the bench (how production runs:
    the server outlives every flow run, so its start-up is not part of any run's wall time)."""
    import socket
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = ours_env(tmp)
    env.pop("PREFECT_API_URL", None)
    env["PREFECT_HOME"] = str(tmp / "prefect-server-home")
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port",
                             str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("prefect server did not start") from None
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def run_ours_prefect(config: Path, tmp: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "crawl2model.cli", "run", "--config", str(config)], cwd=ROOT,
                          env=ours_env(tmp), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"crawl2model run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return wall


def run_ours_direct(config: Path, tmp: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--direct", str(config)], cwd=ROOT, env=ours_env(tmp),
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"direct run failed:\n{proc.stderr[-4000:]}")
    return wall


def direct_pipeline(config_path: str) -> None:
    """The flows' sequence of pipeline_lib calls and worker-pool hand-offs, with no Prefect at all."""
    from crawl2model.env import configure_environment

    configure_environment()
    from pipeline_lib import pipeline, workers
    from pipeline_lib.config import load_config

    cfg = load_config(config_path)
    run_dir = pipeline.prepare_run(cfg)
    ref = pipeline.ConfigRef.of(cfg)
    size = cfg.run.workers
    workers.warm_up(cfg)  # as `crawl2model run` does

    def map_shards(fn, names, *head):
        futures = [workers.submit(size, fn, *head, n) for n in names]
        return [f.result() for f in futures]

    try:
        pipeline.run_source(ref, run_dir, map_jobs=map_shards)
        for key in pipeline.CURATION_STAGES:
            if pipeline.enabled(cfg, key):
                pipeline.begin_stage(ref, run_dir, key)
                map_shards(pipeline.run_stage_shard, pipeline.list_input_shards(ref, run_dir, key), ref, run_dir, key)
        if pipeline.enabled(cfg, "dedup"):
            pipeline.begin_stage(ref, run_dir, "dedup")
            names = pipeline.list_input_shards(ref, run_dir, "dedup")
            map_shards(pipeline.dedup_signatures_shard, names, ref, run_dir)
            workers.call(size, pipeline.dedup_cluster, ref, run_dir)
            map_shards(pipeline.dedup_filter_shard, names, ref, run_dir)
        if pipeline.enabled(cfg, "pii"):
            pipeline.begin_stage(ref, run_dir, "pii")
            map_shards(pipeline.run_stage_shard, pipeline.list_input_shards(ref, run_dir, "pii"), ref, run_dir, "pii")
        workers.call(size, pipeline.prepare_tokenizer, ref, run_dir)
        pipeline.begin_stage(ref, run_dir, "tokens")
        map_shards(pipeline.run_stage_shard, pipeline.list_input_shards(ref, run_dir, "tokens"), ref, run_dir, "tokens")
    finally:
        workers.shutdown()


def run_facts(run_dir: Path) -> dict:
    """Documents and tokens out, and the task seconds per stage, from the manifests."""
    from pipeline_lib import shards

    fs = shards.filesystem(str(run_dir))
    stage_seconds, kept = {}, {}
    for stage in SHARD_STAGES:
        d = str(run_dir / stage)
        data = [shards.load_manifest(fs, d, name) for name in shards.list_manifests(fs, d)]
        if not data:
            continue
        stage_seconds[stage] = round(sum(d.get("seconds", 0.0) for d in data), 2)
        kept[stage] = sum(d.get("counters", {}).get("kept", 0) for d in data)
    tok_dir = str(run_dir / "07_tokens")
    n_tokens = [n for name in shards.list_shards(fs, tok_dir)
                for n in shards.read_verified(fs, tok_dir, name, columns=["n_tokens"]).column("n_tokens").to_pylist()]
    return {"task_seconds_by_stage": stage_seconds, "task_seconds_total": round(sum(stage_seconds.values()), 2),
            "documents_by_stage": kept, "kept_final": len(n_tokens), "tokens": int(sum(n_tokens))}


def prefect_probe(n_tasks: int) -> None:
    """Prefect's own costs with no work: import, embedded server start, one flow, n empty tasks."""
    t0 = time.perf_counter()
    from crawl2model.env import configure_environment

    configure_environment()
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE
    from prefect.task_runners import ThreadPoolTaskRunner

    t_import = time.perf_counter()

    @task(cache_policy=NO_CACHE, persist_result=False)
    def empty(i: int) -> int:
        return i

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=4))
    def probe(n: int) -> list:
        return [f.result() for f in [empty.submit(i) for i in range(n)]]

    t1 = time.perf_counter()
    probe(0)
    t_first_flow = time.perf_counter() - t1
    t2 = time.perf_counter()
    probe(n_tasks)
    t_tasks = time.perf_counter() - t2
    t3 = time.perf_counter()
    probe(0)
    t_empty_flow = time.perf_counter() - t3
    print(json.dumps({"import_seconds": round(t_import - t0, 2),
                      "first_flow_with_server_start_seconds": round(t_first_flow, 2),
                      "empty_flow_seconds": round(t_empty_flow, 3),
                      "flow_with_n_empty_tasks_seconds": round(t_tasks, 3), "n_tasks": n_tasks}))


def run_prefect_probe(n_tasks: int, tmp: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--prefect-probe", str(n_tasks)], cwd=ROOT, env=ours_env(tmp),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr[-1500:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- theirs
def run_datatrove(warc_dir: Path, workers: int, out: Path, tokenizer: Path) -> dict:
    dt_env = _bench_module("datatrove_env")
    python = dt_env.ensure_venv()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(dt_env.seed_offline_assets(OUT / "hf-home"))
    t0 = time.perf_counter()
    proc = subprocess.run([str(python), str(Path(_HERE) / "datatrove_fineweb.py"), "--warc-dir", str(warc_dir),
                           "--out", str(out), "--tokenizer", str(tokenizer), "--workers", str(workers)],
                          cwd=str(OUT), env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"datatrove failed:\n{proc.stderr[-6000:]}")
    return {"wall_seconds": round(wall, 2), **json.loads(proc.stdout.strip().splitlines()[-1])}


# ---------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--files", type=int, default=8, help="WARC files (datatrove runs one task per file)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--skip-datatrove", action="store_true")
    ap.add_argument("--skip-direct", action="store_true")
    ap.add_argument("--repeat", type=int, default=1, help="runs of ours (Prefect and direct, alternating); best counts")
    ap.add_argument("--no-prefect-probe", action="store_true", help="skip measuring Prefect's fixed/per-task costs")
    ap.add_argument("--prefect-server", action="store_true",
                    help="run ours against a long-lived local `prefect server start` instead of the embedded one")
    ap.add_argument("--direct", help=argparse.SUPPRESS)
    ap.add_argument("--prefect-probe", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.direct:
        direct_pipeline(args.direct)
        return
    if args.prefect_probe is not None:
        prefect_probe(args.prefect_probe)
        return
    extraction = SHARED / "extraction"
    if not extraction.is_dir():
        print(json.dumps({"skipped": f"{extraction} not present"}))
        return
    OUT.mkdir(parents=True, exist_ok=True)
    warc_dir = OUT / "warc"
    warcs = build_warcs(warc_dir, args.records, args.files, load_pages(extraction))
    records_per_shard = (args.records + args.files - 1) // args.files
    tokenizer = None
    if not args.skip_datatrove:
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED / "tiktoken-cache"))
        tokenizer = _bench_module("datatrove_env").gpt2_tokenizer_json(OUT.parent / "gpt2-tokenizer.json")
    result: dict = {"bench": "e2e", "records": args.records, "warc_files": args.files,
                    "warc_bytes": sum(p.stat().st_size for p in warcs), "by_workers": {},
                    "prefect": "running server" if args.prefect_server else "embedded (started by each run)"}
    with prefect_server(OUT) if args.prefect_server else contextlib.nullcontext() as api_url:
        global PREFECT_API_URL
        PREFECT_API_URL = api_url
        _race(args, warcs, warc_dir, records_per_shard, tokenizer, result)
    PREFECT_API_URL = None  # that server is gone: the probe below starts its own embedded one
    if not args.no_prefect_probe:
        # Where orchestration time goes: fixed (import, server start, flow runs) vs per task run.
        result["prefect_probe"] = run_prefect_probe(200, OUT)
    dt_versions = _bench_module("datatrove_env").installed_versions() if not args.skip_datatrove else {}
    result["goals"] = {"ratio_at_least": GOAL_RATIO, "overhead_below": GOAL_OVERHEAD}
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                         "load_avg_at_end": os.getloadavg()}
    result["versions"] = {"datatrove_venv": dt_versions, "ours": _our_versions()}
    print(json.dumps(result, indent=1))


def _race(args, warcs: list[Path], warc_dir: Path, records_per_shard: int, tokenizer, result: dict) -> None:
    for w in args.workers:
        row: dict = {}
        data_root = OUT / "runs"
        config = write_config(OUT / f"ours-w{w}.yaml", warcs, w, data_root, records_per_shard)
        # Prefect and direct runs alternate, each from an empty run dir; the best of --repeat each,
        # so a burst of load from other processes on a shared machine does not decide the overhead.
        walls, direct_walls = [], []
        for _ in range(args.repeat):
            shutil.rmtree(data_root / "e2e" / f"w{w}", ignore_errors=True)
            walls.append(run_ours_prefect(config, OUT))
            facts = run_facts(data_root / "e2e" / f"w{w}")
            if not args.skip_direct:
                shutil.rmtree(data_root / "e2e" / f"w{w}", ignore_errors=True)
                direct_walls.append(run_ours_direct(config, OUT))
                direct_facts = run_facts(data_root / "e2e" / f"w{w}")
        wall = min(walls)
        row["ours"] = {"wall_seconds": round(wall, 2), "all_wall_seconds": [round(x, 2) for x in walls],
                       "docs_per_s": round(args.records / wall, 2), **facts}
        if not args.skip_direct:
            direct = min(direct_walls)
            row["ours_direct_no_prefect"] = {"wall_seconds": round(direct, 2),
                                             "all_wall_seconds": [round(x, 2) for x in direct_walls],
                                             "docs_per_s": round(args.records / direct, 2),
                                             "kept_final": direct_facts["kept_final"], "tokens": direct_facts["tokens"]}
            row["prefect_overhead_fraction"] = round((wall - direct) / wall, 4)
        if not args.skip_datatrove:
            theirs = run_datatrove(warc_dir, w, OUT / f"datatrove-w{w}", tokenizer)
            theirs["docs_per_s"] = round(args.records / theirs["wall_seconds"], 2)
            row["datatrove"] = theirs
            row["ratio_ours_over_datatrove"] = round(row["ours"]["docs_per_s"] / theirs["docs_per_s"], 3)
        result["by_workers"][str(w)] = row


def _our_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("prefect", "trafilatura", "tiktoken", "presidio-analyzer", "pyarrow", "fasttext-predict", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


if __name__ == "__main__":
    main()
