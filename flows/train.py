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
        print(f"  train      {result.get('steps')} steps, loss {result.get('final_loss', float('nan')):.3f}, "
              f"val {result.get('val_loss', float('nan')):.3f}", file=sys.stderr, flush=True)
    from flows.artifacts import publish_training

    publish_training(run_dir, result, cfg.run.storage_options)
    return result


def train_through_deployment(cfg, params: dict) -> dict | None:
    """Train as a run of ``train.deployment`` (e.g. on the GPU pool) and wait for it, when it is set and
    the calling pipeline runs from a deployment itself; None: train here, in this process."""
    from prefect.context import FlowRunContext

    name = cfg.train.deployment
    ctx = FlowRunContext.get()
    if not name or ctx is None or ctx.flow_run is None or ctx.flow_run.deployment_id is None:
        return None
    from prefect.deployments import run_deployment

    from pipeline_lib import pipeline as plan
    from pipeline_lib import shards
    from pipeline_lib.schema import TRAIN_DONE_FILE

    # A subflow of the pipeline run in the UI, though another worker runs it.
    child = run_deployment(name, parameters=params, timeout=None, flow_run_name=f"train-{cfg.run.partition}")
    if not child.state or not child.state.is_completed():
        raise RuntimeError(f"training deployment {name!r} ended {child.state.name if child.state else 'without a state'} "
                           f"(flow run {child.name}); its logs say why")
    run_dir = params["run_dir"]
    fs = plan.fs_for(cfg, run_dir)
    done = shards.read_json_or_none(fs, shards.join(run_dir, "08_train", TRAIN_DONE_FILE)) or {}
    return {**done.get("result", {}), "deployment": name, "flow_run": child.name}


if __name__ == "__main__":
    stage_cli(train_flow, __doc__)
