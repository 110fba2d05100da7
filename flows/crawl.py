"""Source: crawl the seeds (or ingest WARC / cleaned documents) into 00_crawl page shards.

`python flows/crawl.py --config configs/small.yaml`
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script

from prefect import flow, get_run_logger  # noqa: E402

from flows.common import DEFAULT_CONFIG, documented, resolve, run_name, stage_cli  # noqa: E402
from pipeline_lib import pipeline as plan  # noqa: E402
from tasks.shard_tasks import crawl_task, ingest_file_task  # noqa: E402


@flow(name="crawl", flow_run_name=run_name("crawl"))
@documented
def crawl_flow(config_path: str = DEFAULT_CONFIG, partition: str | None = None, data_root: str | None = None,
               run_dir: str | None = None) -> dict:
    """Fill the run's source folder; resumes a killed crawl, does nothing for a finished one."""
    cfg, ref, run_dir = resolve(config_path, partition, data_root, run_dir)
    # WARC / document files: one task each, side by side on the worker pool; the crawl beside them.
    files = [ingest_file_task.submit(ref, job) for job in plan.source_jobs(ref, run_dir)]
    crawled = crawl_task(ref, run_dir) if "crawl" in cfg.source.kind else None
    result = plan.finish_source(ref, crawled, [f.result() for f in files])
    for kind, summary in result.items():
        done = " (already complete)" if summary.get("skipped") else ""
        items = summary.get("pages", summary.get("docs", 0))
        print(f"  {kind:<10} {items} {'documents' if kind == 'docs' else 'pages'}, {summary.get('rejected', 0)} "
              f"rejected{done}", file=sys.stderr, flush=True)
        for line in plan.failed_files_lines(summary):  # the log reaches the console and the UI
            get_run_logger().warning(line.strip().removeprefix("error: "))
    return result


if __name__ == "__main__":
    stage_cli(crawl_flow, __doc__)
