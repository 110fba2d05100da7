"""The pipeline as deployments on a real Prefect server: deploy, a worker, a run, backfills, serve, the UI.

One real `prefect server start` (SQLite, 127.0.0.1, a temporary PREFECT_HOME) for the module;
`prefect deploy` from deployments/prefect.yaml; a real `prefect worker start` on the process pool.
The tests share the server and run in file order (each builds on the one before).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline_lib import partitions
from pipeline_lib.config import load_config
from tests.e2e.support import REPO, write_small_config
from tests.ops import browser
from tests.ops.server_support import PrefectServer, Processes

pytestmark = pytest.mark.slow

FIRST = "2026-11-01"
BACKFILL = ["2026-11-02", "2026-11-03"]
RUN_TIMEOUT = 300
OUTPUT = REPO / "test-output"  # screenshots of the UI (ignored by git)


def _light_config(tmp: Path) -> Path:
    """configs/small.yaml, isolated (own data root), lighter: fewer pages, two training steps.

    The sample site listens on a free port per run (port 0): backfilled partitions run at once.
    """
    path = write_small_config(tmp, task_runner="thread", workers=1)
    data = yaml.safe_load(path.read_text())
    data["crawl"]["max_pages"] = 30
    data["crawl"]["sample_site"]["port"] = 0
    data["train"].update(max_steps=2, deployment="train/train")  # from a deployment: trains on the GPU pool
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("server-stack")
    procs = Processes(tmp)
    server = PrefectServer(tmp, procs)
    state = {"tmp": tmp, "server": server, "procs": procs, "config": _light_config(tmp)}
    try:
        server.start()
        for pool in ("crawl2model-cpu", "crawl2model-gpu"):
            server.cli(["work-pool", "create", pool, "--type", "process"])
        server.cli(["--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml"])
        worker_env = server.client_env(CRAWL2MODEL_HOME=str(REPO), PREFECT_WORKER_QUERY_SECONDS="2",
                                       PREFECT_WORKER_HEARTBEAT_SECONDS="10")
        procs.start("worker-cpu", [sys.executable, "-m", "prefect", "worker", "start", "--pool", "crawl2model-cpu",
                                   "--type", "process", "--limit", "2"], worker_env)
        procs.start("worker-gpu", [sys.executable, "-m", "prefect", "worker", "start", "--pool", "crawl2model-gpu",
                                   "--type", "process", "--limit", "1"], worker_env)
        yield state
    finally:
        procs.stop()


def test_deploy_created_every_deployment_with_its_pool_and_schedule(stack):
    server = stack["server"]
    spec = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())["deployments"]
    flows = {"daily": "pipeline", "train": "train"}
    for d in spec:
        dep = server.deployment(f"{flows.get(d['name'], d['name'])}/{d['name']}")
        assert dep["work_pool_name"] == d["work_pool"]["name"]
        assert dep["parameters"]["config_path"] == d["parameters"]["config_path"]
    daily = server.deployment("pipeline/daily")
    assert [s["schedule"]["cron"] for s in daily["schedules"]] == ["0 3 * * *"]
    assert daily["parameters"]["partition"] == "{scheduled_date}"
    assert server.deployment("train/train")["work_pool_name"] == "crawl2model-gpu"
    schema = daily["parameter_openapi_schema"]["properties"]
    assert {"config_path", "partition", "data_root", "run_dir"} <= set(schema)


def test_a_deployment_run_through_the_worker_writes_outputs_and_artifacts(stack):
    server, config = stack["server"], stack["config"]
    run = server.create_run("pipeline/daily", {"config_path": str(config), "partition": FIRST},
                            name=f"pipeline-{FIRST}")
    done = server.wait(run["id"], RUN_TIMEOUT)
    assert done["state"]["type"] == "COMPLETED", server.logs(run["id"])[-4000:] + stack["procs"].tails()
    stack["first_run"] = done

    cfg = load_config(str(config))
    state = partitions.check(cfg, FIRST)
    assert state.complete, state.missing
    run_dir = Path(state.run_dir)
    assert run_dir == stack["tmp"] / "runs" / "small" / FIRST
    assert list((run_dir / "07_tokens").glob("*.parquet")) and (run_dir / "08_train" / "done.json").is_file()

    children = server.post("/flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": [run["id"]]}},
                                                 "limit": 50})
    assert {c["name"] for c in children} and all(c["state"]["type"] == "COMPLETED" for c in children)
    # Each stage subflow is named after its stage and the partition, as the parent is.
    assert {f"{s}-{FIRST}" for s in ("crawl", "extract", "dedup", "tokens", "train")} <= {c["name"] for c in children}
    # train.deployment: training ran as a run of the train deployment, on the GPU pool's worker.
    train = next(c for c in children if c["name"] == f"train-{FIRST}")
    assert train["deployment_id"] == server.deployment("train/train")["id"]
    assert train["work_pool_name"] == "crawl2model-gpu"
    stage_runs = [c for c in children if c["name"] != f"train-{FIRST}"]
    assert stage_runs and all(c["deployment_id"] is None for c in stage_runs)  # the stages ran in the pipeline's process
    own = {a["key"]: a for a in server.artifacts([run["id"]]) if a["key"]}
    funnel = own[f"funnel-small-{FIRST}"]
    assert funnel["type"] == "table"
    rows = json.loads(funnel["data"]) if isinstance(funnel["data"], str) else funnel["data"]
    stages = {r["stage"]: r for r in rows}
    assert {"00_crawl", "04_quality", "07_tokens"} <= set(stages)
    assert all(r["rows_in"] == r["kept"] + r["rejected"] for r in rows)
    assert f"rejections-small-{FIRST}" in own and f"tokens-small-{FIRST}" in own and f"run-dir-small-{FIRST}" in own
    sub = server.artifacts([c["id"] for c in children])
    progress = [a for a in sub if a["type"] == "progress"]
    assert progress and all(float(a["data"]) == 100.0 for a in progress)
    assert any(a["type"] == "markdown" and "loss" in (a["description"] or "").lower() for a in sub)


def test_a_rerun_waits_for_the_training_run_an_earlier_attempt_left_going_instead_of_starting_another(stack):
    server, config = stack["server"], stack["config"]
    train_dep = server.deployment("train/train")
    children = server.post("/flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": [stack["first_run"]["id"]]}},
                                                 "limit": 50})
    params = next(c for c in children if c["name"] == f"train-{FIRST}")["parameters"]
    # What a pipeline killed while it waited leaves behind: a training run of this run dir, still
    # running (on the GPU worker, as far as the server knows; here nothing runs it).
    leftover = server.post(f"/deployments/{train_dep['id']}/create_flow_run",
                           {"parameters": params, "name": "train-leftover", "state": {"type": "RUNNING", "name": "Running"}})
    before = len(server.flow_runs(train_dep["id"]))
    run = server.create_run("pipeline/daily", {"config_path": str(config), "partition": FIRST}, name="pipeline-rerun")
    deadline = time.monotonic() + RUN_TIMEOUT
    while "train-leftover" not in server.logs(run["id"]):
        assert time.monotonic() < deadline, server.logs(run["id"])[-4000:] + stack["procs"].tails()
        assert server.get(f"/flow_runs/{run['id']}")["state"]["type"] not in ("COMPLETED", "FAILED", "CRASHED")
        time.sleep(1)
    assert "waiting for it" in server.logs(run["id"])
    server.post(f"/flow_runs/{leftover['id']}/set_state",
                {"state": {"type": "COMPLETED", "name": "Completed"}, "force": True})
    done = server.wait(run["id"], RUN_TIMEOUT)
    assert done["state"]["type"] == "COMPLETED", server.logs(run["id"])[-4000:] + stack["procs"].tails()
    # No second training run was started beside the one still going.
    assert len(server.flow_runs(train_dep["id"])) == before


def test_the_ui_shows_the_run_state_and_its_funnel_artifact(stack):
    if not browser.available():
        pytest.skip(f"{browser.CHROMIUM} is not installed (apt-get install -y chromium)")
    run = stack.get("first_run")
    if run is None:
        pytest.skip("the deployment run did not complete")
    server, tmp = stack["server"], stack["tmp"]
    url = f"{server.url}/runs/flow-run/{run['id']}"
    OUTPUT.mkdir(exist_ok=True)

    dom = browser.dump_dom(url, tmp / "chromium-dump")
    assert run["name"] in dom and "Completed" in dom, dom[-3000:]
    browser.screenshot(url, tmp / "chromium-shot", OUTPUT / "flow-run-page.png")
    assert (OUTPUT / "flow-run-page.png").stat().st_size > 10_000

    with browser.DevToolsPage(tmp / "chromium-devtools") as page:
        page.navigate(url)
        page.wait_for_text(run["name"], "Completed", "Artifacts")
        assert page.click_text("Artifacts")
        text = page.wait_for_text(f"funnel-small-{FIRST}", "Per-stage funnel")
        page.screenshot(OUTPUT / "flow-run-artifacts.png")
    assert "TABLE" in text.upper()
    assert (OUTPUT / "flow-run-artifacts.png").stat().st_size > 10_000


def test_a_scheduled_run_takes_its_scheduled_date_as_partition(stack):
    """What the daily schedule does, on a cheap stage: "{scheduled_date}" becomes the run's date (UTC)."""
    server = stack["server"]
    dep = server.deployment("urlfilter/urlfilter")
    run = server.post(f"/deployments/{dep['id']}/create_flow_run", {
        "parameters": {"config_path": str(stack["config"]), "partition": "{scheduled_date}"},
        "state": {"type": "SCHEDULED", "state_details": {"scheduled_time": "2026-10-15T23:30:00-05:00"}}})
    done = server.wait(run["id"], 180)
    assert done["state"]["type"] == "COMPLETED", server.logs(run["id"])[-3000:]
    run_dir = stack["tmp"] / "runs" / "small" / "2026-10-16"  # 23:30 at UTC-5 is the 16th in UTC
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["run"]["partition"] == "2026-10-16"


def _backfill(stack, *extra: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    server = stack["server"]
    proc = subprocess.run([sys.executable, "-m", "crawl2model.cli", "backfill", "--partitions", ",".join(BACKFILL),
                           "--config", str(stack["config"]), "--concurrency", "2", "--poll", "1", "--json",
                           "--timeout", str(RUN_TIMEOUT), *extra],
                          cwd=REPO, env=server.client_env(), capture_output=True, text=True, timeout=RUN_TIMEOUT + 60)
    rows = json.loads(proc.stdout) if proc.stdout.strip().startswith("[") else []
    return proc, rows


def _started(runs: list[dict]) -> set[str]:
    """Flow runs other than the scheduler's future daily runs."""
    return {r["id"] for r in runs if r["state"]["type"] != "SCHEDULED"}


def _snapshot(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_backfill_runs_each_partition_then_skips_them_all(stack):
    server = stack["server"]
    daily_id = server.deployment("pipeline/daily")["id"]
    proc, rows = _backfill(stack)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + stack["procs"].tails()
    assert [r["partition"] for r in rows] == BACKFILL
    assert all(r["state"] == "COMPLETED" for r in rows), rows
    cfg = load_config(str(stack["config"]))
    assert all(partitions.check(cfg, p).complete for p in BACKFILL)
    by_name = {r["name"]: r for r in server.flow_runs(daily_id)}
    for row in rows:
        assert by_name[row["flow_run"]]["parameters"]["partition"] == row["partition"]
        assert "backfill" in by_name[row["flow_run"]]["tags"]

    before_runs = _started(server.flow_runs(daily_id))
    before_files = _snapshot(stack["tmp"] / "runs")
    again, rows = _backfill(stack)
    assert again.returncode == 0, again.stderr[-3000:]
    assert [r["state"] for r in rows] == ["SKIPPED", "SKIPPED"]
    assert _started(server.flow_runs(daily_id)) == before_runs, "a complete partition must not get a flow run"
    assert _snapshot(stack["tmp"] / "runs") == before_files
    assert "0 to run, 2 already complete" in again.stderr

    unknown, _ = _backfill(stack, "--deployment", "pipeline/nope")
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert "deployment pipeline/nope not found on" in unknown.stderr


def test_serve_runs_a_stage_deployment_from_one_process(stack):
    server, procs = stack["server"], stack["procs"]
    procs.stop("worker-cpu")  # from here on only the served process can run anything
    env = server.client_env(PREFECT_RUNNER_POLL_FREQUENCY="2")
    # A deployment is either served or deployed to a pool: drop the deployed one, serve() recreates it.
    deployed = server.deployment("tokens/tokens")
    server.http.delete(f"{server.api}/deployments/{deployed['id']}", timeout=30).raise_for_status()
    procs.start("serve", [sys.executable, "-m", "crawl2model.cli", "serve", "--only", "tokens", "--no-schedules"], env)
    log = stack["tmp"] / "serve.log"
    deadline = time.monotonic() + 120
    while "being served" not in log.read_text(errors="replace"):
        if time.monotonic() > deadline:
            pytest.fail("serve never started serving\n" + procs.tails())
        time.sleep(1)
    served = server.deployment("tokens/tokens")
    assert served["id"] != deployed["id"] and served["work_pool_name"] is None
    tokens_dir = stack["tmp"] / "runs" / "small" / FIRST / "07_tokens"
    before = _snapshot(tokens_dir)
    run = server.create_run("tokens/tokens", {"config_path": str(stack["config"]), "partition": FIRST})
    done = server.wait(run["id"], 180)
    assert done["state"]["type"] == "COMPLETED", server.logs(run["id"])[-3000:] + procs.tails()
    assert _snapshot(tokens_dir) == before, "every token shard was already done: nothing rewritten"
    procs.stop("serve")
