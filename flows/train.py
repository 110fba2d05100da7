"""Training: a GPT trained on the run's token shards; checkpoints and metrics in 08_train.

Runs on its own work pool (a GPU pool in deployments/prefect.yaml), and alone on existing
token shards: `python flows/train.py --config configs/small.yaml`.
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
    cfg, ref, run_dir = resolve(config_path, partition, data_root, run_dir)
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


if __name__ == "__main__":
    stage_cli(train_flow, __doc__)
