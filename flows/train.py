"""Training: a GPT trained on the run's token shards; checkpoints and metrics in 08_train.

The `train` deployment runs it on the GPU pool (deployments/prefect.yaml). The pipeline runs it as
a subflow in its own process, or, with `train.deployment` set and the pipeline itself started from
a deployment, as a run of that deployment that it waits for. Alone on existing token shards:
`python flows/train.py --config configs/small.yaml`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script

from prefect import flow  # noqa: E402

from flows.common import DEFAULT_CONFIG, documented, resolve, run_name, stage_cli  # noqa: E402
from tasks.shard_tasks import train_task  # noqa: E402


@flow(name="train", flow_run_name=run_name("train"))
@documented
def train_flow(config_path: str = DEFAULT_CONFIG, partition: str | None = None, data_root: str | None = None,
               run_dir: str | None = None) -> dict:
    """Train (or resume, or skip when the final checkpoint matches) and publish the loss curve."""
    # Training reads only the run dir: on a GPU machine the crawl's input files need not exist.
    cfg, ref, run_dir = resolve(config_path, partition, data_root, run_dir, check_files=False)
    if not cfg.train.enabled:
        return {"stage": "train", "disabled": True}
    result = train_task(ref, run_dir)
    if result.get("skipped"):
        print("  train      already complete", file=sys.stderr, flush=True)
    else:
        def loss(key: str) -> str:  # no validation part (val_fraction 0, or too few tokens) gives None
            value = result.get(key)
            return "n/a" if value is None else f"{value:.3f}"

        print(f"  train      {result.get('steps')} steps, loss {loss('final_loss')}, val {loss('val_loss')}",
              file=sys.stderr, flush=True)
    from flows.artifacts import publish_training

    publish_training(run_dir, result, cfg.run.storage_options)
    return result


POLL_SECONDS = 5.0  # how often a pipeline waiting on its training run asks the server


def unfinished_train_run(deployment: str, run_dir: str):
    """A run of ``deployment`` training ``run_dir`` that has not ended (scheduled to start by now,
    pending, running, paused, cancelling), e.g. one started by an attempt of the pipeline that was
    killed while it waited; None when there is none."""
    from datetime import datetime, timedelta, timezone

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (FlowRunFilter, FlowRunFilterDeploymentId, FlowRunFilterState,
                                                FlowRunFilterStateType)
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    unfinished = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED, StateType.CANCELLING]
    soon = datetime.now(timezone.utc) + timedelta(minutes=1)
    with get_client(sync_client=True) as client:
        dep = client.read_deployment_by_name(deployment)
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[dep.id]),
                                          state=FlowRunFilterState(type=FlowRunFilterStateType(any_=unfinished))),
            sort=FlowRunSort.START_TIME_DESC, limit=200)
    for run in runs:
        if (run.parameters or {}).get("run_dir") != run_dir:
            continue
        if run.state and run.state.is_scheduled() and run.state.state_details.scheduled_time \
                and run.state.state_details.scheduled_time > soon:
            continue  # scheduled for later by someone: not a run in progress
        return run
    return None


def wait_for_flow_run(flow_run_id, poll_seconds: float = POLL_SECONDS):
    """The flow run once its state is final."""
    import time

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            if run.state and run.state.is_final():
                return run
            time.sleep(poll_seconds)


def train_through_deployment(cfg, params: dict) -> dict | None:
    """Train as a run of ``train.deployment`` (e.g. on the GPU pool) and wait for it, when it is set and
    the calling pipeline runs from a deployment itself; None: train here, in this process.

    A training run of the same run dir that has not ended (its pipeline was killed while waiting on
    it) is waited for instead of starting a second one beside it, which would write the same
    checkpoints. If it completes with our parameters, it is our training run; otherwise a new run
    follows it (and resumes from its last checkpoint, or skips when it is already done)."""
    from prefect.context import FlowRunContext

    name = cfg.train.deployment
    ctx = FlowRunContext.get()
    if not name or ctx is None or ctx.flow_run is None or ctx.flow_run.deployment_id is None:
        return None
    from prefect.deployments import run_deployment
    from prefect.logging import get_run_logger

    from pipeline_lib import pipeline as plan
    from pipeline_lib import shards
    from pipeline_lib.schema import TRAIN_DONE_FILE

    run_dir = params["run_dir"]
    child = None
    earlier = unfinished_train_run(name, run_dir)
    if earlier is not None:
        get_run_logger().info("training run %r (%s) of an earlier attempt is still %s: waiting for it instead of "
                              "starting another; cancel it to start afresh", earlier.name, earlier.id,
                              earlier.state.name if earlier.state else "unknown")
        child = wait_for_flow_run(earlier.id)
        if not child.state or not child.state.is_completed():
            get_run_logger().info("training run %r ended %s: starting a new one, which resumes from its last "
                                  "checkpoint", child.name, child.state.name if child.state else "without a state")
            child = None
        elif child.parameters != params:  # it trained this run dir under other parameters: ours checks its result
            child = None
    if child is None:
        # A subflow of the pipeline run in the UI, though another worker runs it.
        child = run_deployment(name, parameters=params, timeout=None, flow_run_name=f"train-{cfg.run.partition}",
                               poll_interval=POLL_SECONDS)
    if not child.state or not child.state.is_completed():
        raise RuntimeError(f"training deployment {name!r} ended {child.state.name if child.state else 'without a state'} "
                           f"(flow run {child.name}); its logs say why")
    fs = plan.fs_for(cfg, run_dir)
    done = shards.read_json_or_none(fs, shards.join(run_dir, "08_train", TRAIN_DONE_FILE)) or {}
    return {**done.get("result", {}), "deployment": name, "flow_run": child.name}


if __name__ == "__main__":
    stage_cli(train_flow, __doc__)
