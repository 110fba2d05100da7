"""``crawl2model serve`` and ``crawl2model backfill``: the pipeline as deployments on a Prefect server.

    crawl2model serve                                   # every deployment in deployments/prefect.yaml, one process
    crawl2model backfill --from 2026-11-01 --to 2026-11-07 --concurrency 2
    crawl2model backfill --partitions 2026-11-01,crawl-42 --deployment pipeline/daily --force

Both talk to whichever Prefect API ``PREFECT_API_URL`` names (a `prefect server start` or the
compose stack); without one, ``serve`` starts the embedded server the way ``run`` does.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from crawl2model.commands.argtypes import at_least

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PREFECT_FILE = REPO_ROOT / "deployments" / "prefect.yaml"
DEFAULT_DEPLOYMENT = "pipeline/daily"
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("serve", help="serve the deployments of deployments/prefect.yaml from this process (dev)")
    s.add_argument("--prefect-file", default=str(DEFAULT_PREFECT_FILE), help="deployment definitions (YAML)")
    s.add_argument("--only", action="append", metavar="NAME",
                   help="serve only this deployment (repeatable; default: all)")
    s.add_argument("--limit", type=int, default=None, help="most flow runs this process runs at once")
    s.add_argument("--no-schedules", action="store_true", help="serve without the schedules (manual runs only)")
    s.set_defaults(func=_serve)

    b = sub.add_parser("backfill", help="one flow run per partition through a deployment, N at a time")
    b.add_argument("--from", dest="start", metavar="DATE", help="first partition date (YYYY-MM-DD)")
    b.add_argument("--to", dest="end", metavar="DATE", help="last partition date, included")
    b.add_argument("--partitions", metavar="A,B,C", help="explicit partition keys instead of a date range")
    b.add_argument("--deployment", default=DEFAULT_DEPLOYMENT, help="flow-name/deployment-name (default: %(default)s)")
    b.add_argument("--concurrency", type=int, default=2, help="flow runs in flight at once (default: %(default)s)")
    b.add_argument("--force", action="store_true", help="submit partitions that are already complete too")
    b.add_argument("--config", help="config_path parameter of the runs (default: the deployment's)")
    b.add_argument("--data-root", help="data_root parameter of the runs (default: the deployment's data_root, "
                                       "else $CRAWL2MODEL_DATA_ROOT, else the config's); also where "
                                       "completeness is checked")
    b.add_argument("--poll", type=at_least(float, 0.1), default=2.0, help="seconds between state checks")
    b.add_argument("--timeout", type=float, default=None, help="stop waiting after this many seconds")
    b.add_argument("--json", action="store_true", help="print the result table as JSON")
    b.set_defaults(func=_backfill)


# --- serve ------------------------------------------------------------------------------------


def load_prefect_file(path: str | Path) -> list[dict[str, Any]]:
    """The ``deployments`` list of a prefect.yaml (anchors and merge keys resolved by the YAML loader)."""
    import yaml

    data = yaml.safe_load(Path(path).read_text())
    deployments = data.get("deployments") or []
    if not deployments:
        raise ValueError(f"{path}: no deployments")
    return deployments


def load_entrypoint(entrypoint: str):
    """``flows/pipeline.py:pipeline`` -> the flow object, imported as a module of this repo."""
    file_part, _, attr = entrypoint.partition(":")
    module = file_part.removesuffix(".py").replace("/", ".")
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    return getattr(importlib.import_module(module), attr)


def runner_deployments(spec: list[dict[str, Any]], only: list[str] | None = None, schedules: bool = True) -> list:
    """The same deployments `prefect deploy` creates, as RunnerDeployments for ``serve()``.

    Work pools are ignored here: a served deployment runs in this process's own subprocesses.
    """
    out = []
    for d in spec:
        if only and d["name"] not in only:
            continue
        flow = load_entrypoint(d["entrypoint"])
        sched = [_schedule(d["name"], s) for s in (d.get("schedules") or [])] if schedules else []
        # Everything else prefect.yaml may say that a served deployment can honour (work pool and
        # job variables belong to workers: a served one runs in this process's subprocesses).
        extra = {k: d[k] for k in ("paused", "concurrency_limit", "version", "enforce_parameter_schema") if k in d}
        out.append(flow.to_deployment(name=d["name"], description=d.get("description"), tags=d.get("tags"),
                                      parameters=d.get("parameters") or {}, schedules=sched or None, **extra))
    if only and len(out) != len(set(only)):
        names = sorted(d["name"] for d in spec)
        raise ValueError(f"--only {only}: not all found among {names}")
    return out


def _schedule(deployment: str, s: dict[str, Any]):
    """A prefect.yaml schedule entry (cron, interval or rrule) as Prefect's schedule object; any other
    form is an error, not a deployment silently served without its schedule."""
    from prefect.schedules import Cron, Interval, RRule

    common = {"timezone": s.get("timezone"), "parameters": s.get("parameters") or {}, "active": s.get("active", True)}
    if s.get("cron"):
        return Cron(s["cron"], day_or=s.get("day_or", True), **common)
    if s.get("interval"):
        anchor = s.get("anchor_date")
        if isinstance(anchor, str):
            from datetime import datetime

            anchor = datetime.fromisoformat(anchor)
        return Interval(s["interval"], anchor_date=anchor, **common)
    if s.get("rrule"):
        return RRule(s["rrule"], **common)
    raise ValueError(f"deployment {deployment!r}: a schedule needs cron, interval or rrule, got {sorted(s)}")


def _serve(args: argparse.Namespace) -> int:
    from prefect import serve

    deployments = runner_deployments(load_prefect_file(args.prefect_file), args.only, not args.no_schedules)
    if not os.environ.get("PREFECT_API_URL"):
        print("crawl2model: PREFECT_API_URL is not set: serving on a temporary embedded server that ends with "
              "this process; for the UI, run `prefect server start` and export "
              "PREFECT_API_URL=http://127.0.0.1:4200/api first", file=sys.stderr, flush=True)
    print(f"crawl2model: serving {len(deployments)} deployments from {args.prefect_file}", file=sys.stderr, flush=True)
    serve(*deployments, limit=args.limit)
    return 0


# --- backfill ---------------------------------------------------------------------------------


def plan_backfill(cfg, partitions: list[str], force: bool) -> list[dict[str, Any]]:
    """One row per partition: submit it, or skip it because its run dir is already complete."""
    from pipeline_lib import partitions as parts

    rows = []
    for p in partitions:
        state = parts.check(cfg, p)
        skip = state.complete and not force
        note = "already complete (--force to redo)" if skip else \
            "complete; resubmitted (--force): its finished shards are skipped" if state.complete else state.reason
        rows.append({"partition": p, "run_dir": state.run_dir, "flow_run": None, "flow_run_id": None,
                     "state": "SKIPPED" if skip else "PENDING", "note": note, "forced": force and state.complete})
    return rows


def submit_and_wait(client, deployment_id, flow_name: str, rows: list[dict[str, Any]], parameters: dict[str, Any],
                    concurrency: int, poll: float, timeout: float | None) -> None:
    """Create a flow run per pending row, never more than ``concurrency`` in flight; wait for all.

    Runs are named ``<flow>-<partition>`` and tagged ``backfill``, so the UI groups them.
    """
    queue = [r for r in rows if r["state"] == "PENDING"]
    in_flight: dict[Any, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout if timeout else None
    while queue or in_flight:
        while queue and len(in_flight) < concurrency:
            row = queue.pop(0)
            run = client.create_flow_run_from_deployment(
                deployment_id, parameters={**parameters, "partition": row["partition"]},
                name=f"{flow_name}-{row['partition']}", tags=["backfill"])
            row.update(flow_run=run.name, flow_run_id=str(run.id), state=run.state.type.value)
            in_flight[run.id] = row
            print(f"  submitted {row['partition']}: {run.name}", file=sys.stderr, flush=True)
        time.sleep(poll)
        for run_id in list(in_flight):
            run = client.read_flow_run(run_id)
            row = in_flight[run_id]
            row["state"] = run.state.type.value if run.state else "UNKNOWN"
            if row["state"] in FINAL_STATES:
                row["note"] = (run.state.message or "")[:120] if row["state"] != "COMPLETED" else ""
                del in_flight[run_id]
                print(f"  {row['partition']}: {row['state']}", file=sys.stderr, flush=True)
        if deadline and time.monotonic() > deadline:
            for row in in_flight.values():
                row["note"] = "still running at --timeout"
            for row in queue:
                row.update(state="NOT_SUBMITTED", note="--timeout reached first")
            return


def format_table(rows: list[dict[str, Any]]) -> str:
    cols = ["partition", "flow_run", "state", "note"]
    cells = [[str(r.get(c) or "-") for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def backfill_target(name: str, defaults: dict[str, Any], config: str | None, data_root: str | None,
                    env_data_root: str | None) -> tuple[str, str | None]:
    """(config path, data root) the deployment's runs will use, so completeness is checked where
    they write: --config / --data-root, else the deployment's parameters, else (data root) the
    variable the stack's workers read, as flows.common.resolve orders them."""
    config_path = config or defaults.get("config_path")
    if not config_path:
        raise ValueError(f"deployment {name} has no config_path parameter; pass --config")
    if defaults.get("run_dir"):
        raise ValueError(f"deployment {name} sets run_dir={defaults['run_dir']!r}: every partition would write "
                         "there; a backfill needs a deployment without it")
    return config_path, data_root or defaults.get("data_root") or env_data_root or None


def _backfill(args: argparse.Namespace) -> int:
    from pipeline_lib import partitions as parts
    from pipeline_lib.config import load_config

    if args.concurrency < 1:
        raise ValueError("--concurrency must be at least 1")
    keys = parts.select(args.start, args.end, args.partitions)

    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL

    from flows.common import DATA_ROOT_ENV

    if not PREFECT_API_URL.value():  # a temporary embedded server would start, and it has no deployments
        raise ValueError("backfill submits runs to a Prefect server's deployments, and PREFECT_API_URL is not set: "
                         "start a server, deploy, start a worker, export PREFECT_API_URL (README: 'From the "
                         "embedded default to a Prefect server')")

    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(args.deployment)
        except ObjectNotFound:
            raise ValueError(f"deployment {args.deployment} not found on {client.api_url} (PREFECT_API_URL); "
                             "deploy it (prefect deploy) or serve it (crawl2model serve) first") from None
        config_path, data_root = backfill_target(args.deployment, deployment.parameters or {}, args.config,
                                                 args.data_root, os.environ.get(DATA_ROOT_ENV))
        overrides = {"run": {"data_root": data_root}} if data_root else {}
        cfg = load_config(config_path, overrides)  # the same config the runs will load: fail before submitting
        rows = plan_backfill(cfg, keys, args.force)
        parameters: dict[str, Any] = {"config_path": config_path}
        if args.data_root:
            parameters["data_root"] = args.data_root
        todo = sum(r["state"] == "PENDING" for r in rows)
        forced = sum(bool(r.get("forced")) for r in rows)
        print(f"crawl2model: backfill of {len(keys)} partitions through {args.deployment}: {todo} to run"
              f"{f' ({forced} of them complete, resubmitted by --force)' if forced else ''}, "
              f"{len(keys) - todo} already complete", file=sys.stderr, flush=True)
        flow_name = args.deployment.split("/", 1)[0]
        submit_and_wait(client, deployment.id, flow_name, rows, parameters, args.concurrency, args.poll, args.timeout)

    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0 if all(r["state"] in ("COMPLETED", "SKIPPED") for r in rows) else 1
