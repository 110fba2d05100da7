"""Real Prefect processes for the ops tests: `prefect server start`, workers, `crawl2model serve`.

Every process is started in its own session and killed by its process group on the way out, so a
failing test never leaves a server or worker behind. Logs go to files, shown when something fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from tests.e2e.support import REPO, free_port

PREFECT = [sys.executable, "-m", "prefect"]
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


class Processes:
    """Subprocesses started by a test, each with a log file; stop() ends them all, newest first."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.procs: list[tuple[str, subprocess.Popen, Path]] = []

    def start(self, name: str, args: list[str], env: dict[str, str], cwd: Path = REPO) -> subprocess.Popen:
        log = self.log_dir / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.procs.append((name, proc, log))
        return proc

    def stop(self, name: str | None = None) -> None:
        for entry in reversed(list(self.procs)):
            pname, proc, _ = entry
            if name and pname != name:
                continue
            _terminate(proc)
            self.procs.remove(entry)

    def tails(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {n} ---\n{log.read_text(errors='replace')[-chars:]}" for n, _, log in self.procs)


def _terminate(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # the group: a worker's flow-run subprocesses too
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def base_env(home: Path) -> dict[str, str]:
    # No inherited server, and no worker-machine data root (CRAWL2MODEL_DATA_ROOT) redirecting the runs.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_") and k != "CRAWL2MODEL_DATA_ROOT"}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
               PREFECT_LOGGING_LEVEL="INFO", PYTHONUNBUFFERED="1")
    return env


class PrefectServer:
    """`prefect server start` on 127.0.0.1 and a free port, SQLite in a temporary PREFECT_HOME."""

    def __init__(self, tmp: Path, processes: Processes):
        self.home = tmp / "prefect-home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = f"{self.url}/api"
        self.processes = processes
        self.http = requests.Session()
        # The server answers 503 for errors it wants retried (SQLite busy under load): retry those,
        # as Prefect's own client does, POSTs included (the failed request changed nothing).
        retry = Retry(total=6, connect=0, read=0, backoff_factor=0.5, status_forcelist=[503], allowed_methods=None,
                      respect_retry_after_header=True, raise_on_status=False)
        self.http.mount("http://", HTTPAdapter(max_retries=retry))

    def client_env(self, **extra: str) -> dict[str, str]:
        return {**base_env(self.home), "PREFECT_API_URL": self.api, **extra}

    def start(self, timeout: float = 120) -> None:
        env = base_env(self.home)
        env["PREFECT_UI_ENABLED"] = "true"
        env["PREFECT_UI_API_URL"] = self.api  # the UI's browser code calls this (default: 127.0.0.1:4200)
        env["PREFECT_API_DATABASE_TIMEOUT"] = "60"  # SQLite under a loaded CI machine: wait for the lock longer
        proc = self.processes.start("server", [*PREFECT, "server", "start", "--host", "127.0.0.1",
                                               "--port", str(self.port)], env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"prefect server exited with {proc.returncode}\n{self.processes.tails()}")
            try:
                if self.http.get(f"{self.api}/health", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"no /api/health within {timeout}s\n{self.processes.tails()}")

    def cli(self, args: list[str], timeout: float = 180, **env: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([*PREFECT, *args], cwd=REPO, env=self.client_env(**env), capture_output=True,
                              text=True, timeout=timeout)
        assert proc.returncode == 0, f"prefect {' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc

    def get(self, path: str) -> Any:
        r = self.http.get(f"{self.api}{path}", timeout=30)
        r.raise_for_status()
        return r.json()

    def post(self, path: str, body: dict) -> Any:
        r = self.http.post(f"{self.api}{path}", json=body, timeout=30)
        assert r.ok, f"POST {path}: {r.status_code} {r.text[:2000]}"
        return r.json()

    def deployment(self, full_name: str) -> dict:
        return self.get(f"/deployments/name/{full_name}")

    def create_run(self, full_name: str, parameters: dict, name: str | None = None) -> dict:
        dep = self.deployment(full_name)
        body: dict[str, Any] = {"parameters": parameters}
        if name:
            body["name"] = name
        return self.post(f"/deployments/{dep['id']}/create_flow_run", body)

    def wait(self, flow_run_id: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            run = self.get(f"/flow_runs/{flow_run_id}")
            if run["state"] and run["state"]["type"] in FINAL:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"flow run {flow_run_id} still {run['state']['type']} after {timeout}s\n"
                                   f"{self.processes.tails()}")
            time.sleep(1)

    def flow_runs(self, deployment_id: str) -> list[dict]:
        return self.post("/flow_runs/filter", {"flow_runs": {"deployment_id": {"any_": [deployment_id]}},
                                               "limit": 200})

    def artifacts(self, flow_run_ids: list[str] | None = None) -> list[dict]:
        body: dict[str, Any] = {"limit": 200}
        if flow_run_ids:
            body["artifacts"] = {"flow_run_id": {"any_": flow_run_ids}}
        return self.post("/artifacts/filter", body)

    def logs(self, flow_run_id: str) -> str:
        rows = self.post("/logs/filter", {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200})
        return "\n".join(r["message"] for r in rows)
