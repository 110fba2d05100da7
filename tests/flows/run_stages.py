"""Run stage flows of one config on the embedded Prefect and print their results as JSON.

    python -m tests.flows.run_stages CONFIG crawl          # the source stage only
    python -m tests.flows.run_stages CONFIG cpu            # the CPU stages (urlfilter .. tokens)

The tests start this in a subprocess with a private PREFECT_HOME; the main guard matters: Dask
and the worker pool spawn processes that re-import the main module.
"""

from __future__ import annotations

import json
import sys


def main(config_path: str, which: str) -> None:
    from crawl2model.env import configure_environment

    configure_environment()
    from flows.common import DASK_STAGES, resolve, run_stage_flows
    from flows.pipeline import STAGE_FLOWS
    from pipeline_lib import workers

    cfg, _, run_dir = resolve(config_path)
    names = ("crawl",) if which == "crawl" else DASK_STAGES
    try:
        results = run_stage_flows([f for f in STAGE_FLOWS if f.name in names], cfg, {"config_path": config_path})
    finally:
        workers.shutdown()
    print(json.dumps({"run_dir": run_dir, "results": results}, default=str))


if __name__ == "__main__":
    main(*sys.argv[1:3])
