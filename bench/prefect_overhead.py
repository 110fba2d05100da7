"""Where Prefect's share of a run goes: a timeline and CPU split of one pipeline run. Prints ONE JSON object.

    .venv/bin/python bench/prefect_overhead.py                      # 4,000 records, 2 workers, 2 pairs
    .venv/bin/python bench/prefect_overhead.py --records 8000 --workers 1 --pairs 1

bench/e2e.py measures the overhead as a difference of wall times; this says what makes it up. On a
running ``prefect server start`` (as bench/e2e.py --prefect-server), on the same input as bench/e2e.py
(WARC files built from ../shared/data/extraction), it alternates ``crawl2model run`` and the same
pipeline_lib calls without Prefect (bench/e2e.py --direct) and reports, per pair:

- wall seconds of both and the overhead fraction;
- CPU seconds of the runner process itself and of its worker processes (getrusage);
- CPU seconds the server's process tree spent during the run, and its idle rate for comparison;

and, for the last Prefect run, the timeline read back from the server: when the parent flow run
started after launch, for each stage subflow the gap before it, the time from its start to its
first task run and from its last task run to its end, and what followed the last subflow.
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "prefect-overhead"
RUSAGE_MARK = "PREFECT_OVERHEAD_RUSAGE "


def _e2e():
    spec = importlib.util.spec_from_file_location("bench_e2e", Path(_HERE) / "e2e.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _child(argv: list[str]) -> None:
    """Run a module or script as __main__ and print its own and its children's CPU at exit."""
    import atexit
    import resource
    import runpy

    started = time.perf_counter()

    def report() -> None:
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        sys.stderr.write(RUSAGE_MARK + json.dumps({"runner_cpu": own.ru_utime + own.ru_stime,
                                                   "workers_cpu": kids.ru_utime + kids.ru_stime,
                                                   "wall": time.perf_counter() - started}) + "\n")

    atexit.register(report)
    sys.argv = argv
    if argv[0].endswith(".py"):
        runpy.run_path(argv[0], run_name="__main__")
    else:
        runpy.run_module(argv[0], run_name="__main__", alter_sys=True)


def _tree_cpu(pid: int) -> float:
    import psutil

    total = 0.0
    root = psutil.Process(pid)
    for proc in [root] + root.children(recursive=True):
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _measured(argv: list[str], env: dict, server_pid: int, run_dir: Path) -> dict:
    shutil.rmtree(run_dir, ignore_errors=True)
    before = _tree_cpu(server_pid)
    t0 = time.time()
    proc = subprocess.run([sys.executable, __file__, "--child", *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    wall = time.time() - t0
    server = _tree_cpu(server_pid) - before
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} failed:\n{proc.stderr[-3000:]}")
    usage = json.loads([x for x in proc.stderr.splitlines() if x.startswith(RUSAGE_MARK)][-1][len(RUSAGE_MARK):])
    return {"launched_at": t0, "wall_seconds": round(wall, 2), "runner_cpu_seconds": round(usage["runner_cpu"], 2),
            "workers_cpu_seconds": round(usage["workers_cpu"], 2), "server_cpu_seconds": round(server, 2)}


def _timeline(api_url: str, launched_at: float, ended_at: float) -> dict:
    os.environ["PREFECT_API_URL"] = api_url
    from prefect.client.orchestration import get_client

    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterParentTaskRunId
    from prefect.client.schemas.sorting import FlowRunSort

    async def read():
        async with get_client() as client:
            parent = (await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(parent_task_run_id=FlowRunFilterParentTaskRunId(is_null_=True)),
                sort=FlowRunSort.START_TIME_DESC, limit=1))[0]
            tasks, offset = [], 0
            while True:  # the parent's task runs (one per subflow), then every subflow's
                page = await client.read_task_runs(limit=200, offset=offset)
                tasks += page
                offset += len(page)
                if len(page) < 200:
                    break
            ids = {parent.id} | {t.flow_run_id for t in tasks}
            flows = await client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(ids))),
                                                limit=200)
            return parent, flows, tasks

    parent, flow_runs, task_runs = asyncio.run(read())
    task_by_id = {t.id: t for t in task_runs}
    subflows = sorted((f for f in flow_runs if f.parent_task_run_id in task_by_id
                       and task_by_id[f.parent_task_run_id].flow_run_id == parent.id), key=lambda f: f.start_time)
    stages, previous_end = [], parent.start_time.timestamp()
    for sub in subflows:
        tasks = [t for t in task_runs if t.flow_run_id == sub.id and t.start_time and t.end_time]
        start, end = sub.start_time.timestamp(), sub.end_time.timestamp()
        stages.append({
            "subflow": sub.name, "tasks": len(tasks), "seconds": round(end - start, 3),
            "gap_before": round(start - previous_end, 3),
            "start_to_first_task": round(min(t.start_time.timestamp() for t in tasks) - start, 3) if tasks else None,
            "last_task_to_end": round(end - max(t.end_time.timestamp() for t in tasks), 3) if tasks else None})
        previous_end = end
    return {"launch_to_parent_start": round(parent.start_time.timestamp() - launched_at, 3),
            "stages": stages,
            "between_subflows_total": round(sum(s["gap_before"] for s in stages[1:]), 3),
            "inside_subflow_edges_total": round(sum((s["start_to_first_task"] or 0) + (s["last_task_to_end"] or 0)
                                                    for s in stages), 3),
            "last_subflow_to_parent_end": round(parent.end_time.timestamp() - previous_end, 3),
            "parent_end_to_exit": round(ended_at - parent.end_time.timestamp(), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=4000)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--pairs", type=int, default=2, help="Prefect/direct run pairs, alternating")
    ap.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child)
        return
    e2e = _e2e()
    extraction = e2e.SHARED / "extraction"
    if not extraction.is_dir():
        print(json.dumps({"skipped": f"{extraction} not present"}))
        return
    OUT.mkdir(parents=True, exist_ok=True)
    warcs = e2e.build_warcs(OUT / "warc", args.records, args.files, e2e.load_pages(extraction))
    config = e2e.write_config(OUT / "config.yaml", warcs, args.workers, OUT / "runs",
                              (args.records + args.files - 1) // args.files)
    run_dir = OUT / "runs" / "e2e" / f"w{args.workers}"
    result: dict = {"bench": "prefect_overhead", "records": args.records, "warc_files": args.files,
                    "workers": args.workers, "cpus": os.cpu_count(), "pairs": []}
    with e2e.prefect_server(OUT) as api_url:
        import psutil

        e2e.PREFECT_API_URL = api_url
        env = e2e.ours_env(OUT)
        server_pid = next(p.pid for p in psutil.process_iter(["cmdline"])
                          if p.info["cmdline"] and "server" in p.info["cmdline"] and api_url.split(":")[-1].split("/")[0]
                          in p.info["cmdline"])
        idle = _tree_cpu(server_pid)
        time.sleep(5)
        result["server_idle_cpu_per_s"] = round((_tree_cpu(server_pid) - idle) / 5, 4)
        last = None
        for _ in range(args.pairs):
            ours = _measured(["crawl2model.cli", "run", "--config", str(config)], env, server_pid, run_dir)
            last = ours
            direct = _measured([str(Path(_HERE) / "e2e.py"), "--direct", str(config)], env, server_pid, run_dir)
            pair = {"prefect": ours, "direct": direct,
                    "overhead_fraction": round((ours["wall_seconds"] - direct["wall_seconds"]) / ours["wall_seconds"],
                                               4),
                    "extra_runner_cpu_seconds": round(ours["runner_cpu_seconds"] - direct["runner_cpu_seconds"], 2),
                    "extra_server_cpu_seconds": round(ours["server_cpu_seconds"] - direct["server_cpu_seconds"], 2)}
            result["pairs"].append(pair)
        result["timeline_of_last_prefect_run"] = _timeline(api_url, last["launched_at"],
                                                           last["launched_at"] + last["wall_seconds"])
    for pair in result["pairs"]:
        for side in ("prefect", "direct"):
            pair[side].pop("launched_at")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
