"""The whole DAG: crawl -> urlfilter -> extract -> langid -> quality -> dedup -> pii -> tokens -> train.

Each stage is its own flow (a subflow here), so the UI shows the run as a table of contents and a
single stage can be re-run alone. Every stage skips the shards it already finished, so running a
partition again redoes only what is missing.

    python flows/pipeline.py --config configs/small.yaml [--partition 2026-11-27]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script

from prefect import flow  # noqa: E402

from flows.artifacts import publish_funnel  # noqa: E402
from flows.common import (DEFAULT_CONFIG, documented, resolve, run_name, run_stage_flows, stage_cli,  # noqa: E402
                          subflow_settings)
from flows.crawl import crawl_flow  # noqa: E402
from flows.dedup import dedup_flow  # noqa: E402
from flows.extract import extract_flow  # noqa: E402
from flows.langid import langid_flow  # noqa: E402
from flows.pii import pii_flow  # noqa: E402
from flows.quality import quality_flow  # noqa: E402
from flows.tokens import tokens_flow  # noqa: E402
from flows.train import train_flow, train_through_deployment  # noqa: E402
from flows.urlfilter import urlfilter_flow  # noqa: E402
from pipeline_lib import pipeline as plan  # noqa: E402
from pipeline_lib import workers  # noqa: E402

STAGE_FLOWS = [crawl_flow, urlfilter_flow, extract_flow, langid_flow, quality_flow, dedup_flow, pii_flow,
               tokens_flow, train_flow]


@flow(name="pipeline", flow_run_name=run_name("pipeline"))
@documented
def pipeline(config_path: str = DEFAULT_CONFIG, partition: str | None = None, data_root: str | None = None,
             run_dir: str | None = None) -> dict:
    """Run every stage in order on one partition and publish the funnel."""
    cfg, ref, run_dir = resolve(config_path, partition, data_root, run_dir)
    plan.check_source_state(cfg)  # a deployment's run refuses a source with nothing to read, as the CLI does
    params = dict(config_path=config_path, partition=cfg.run.partition, data_root=cfg.run.data_root, run_dir=run_dir)
    try:
        workers.warm_up(cfg)  # worker processes start importing while the first stages run
        # A disabled stage costs nothing, not even a subflow run.
        results = run_stage_flows([f for f in STAGE_FLOWS if plan.enabled(cfg, f.name) and f is not train_flow],
                                  cfg, params)
    finally:
        workers.shutdown()
    if plan.enabled(cfg, "train"):  # after the pool is gone: its memory is the model's now
        results["train"] = train_through_deployment(cfg, params)
        if results["train"] is None:
            with subflow_settings(cfg):
                results["train"] = train_flow(**params)
    fs = plan.fs_for(cfg, run_dir)
    results["funnel"] = publish_funnel(f"{cfg.run.name}-{cfg.run.partition}", run_dir, fs)
    results["run_dir"] = run_dir
    return results


if __name__ == "__main__":
    stage_cli(pipeline, __doc__)
