"""What a run shows in the Prefect UI: the funnel, rejection reasons, token counts, the loss curve.

Artifacts carry counts and names only, never document text (no PII can reach the UI).
"""

from __future__ import annotations

import base64
import re
from typing import Any

from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from pipeline_lib import report, shards


def artifact_key(*parts: str) -> str:
    """Prefect keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")[:100]


def publish_funnel(run_name: str, run_dir: str, fs) -> list[dict[str, Any]]:
    rows = report.funnel(fs, run_dir)
    table = [{"stage": r["stage"], "shards": r["shards"], "rows_in": r["rows_in"], "kept": r["kept"],
              "rejected": r["rejected"],
              "reasons": ", ".join(f"{k}: {v}" for k, v in r["reasons"].items()) or "-",
              "counters": ", ".join(f"{k}: {v}" for k, v in r["counters"].items()) or "-"} for r in rows]
    create_table_artifact(key=artifact_key("funnel", run_name), table=table,
                          description=f"Per-stage funnel of {run_dir}")
    reasons = [{"stage": r["stage"], "reason": k, "rows": v} for r in rows for k, v in r["reasons"].items()]
    if reasons:
        create_table_artifact(key=artifact_key("rejections", run_name), table=reasons,
                              description="Rejected rows by stage and reason")
    tokens = next((r for r in rows if r["stage"] == "07_tokens"), None)
    if tokens:
        counters = "\n".join(f"| {k} | {v} |" for k, v in tokens["counters"].items())
        create_markdown_artifact(key=artifact_key("tokens", run_name),
                                 markdown=f"### Tokens\n\n| counter | value |\n|---|---:|\n{counters}\n",
                                 description="Token counts of the run")
    if "://" in run_dir:
        create_link_artifact(key=artifact_key("run-dir", run_name), link=run_dir, description="Run directory")
    else:
        create_markdown_artifact(key=artifact_key("run-dir", run_name),
                                 markdown=f"Run directory: `{run_dir}`\n\n"
                                          f"Read it with DuckDB: `SELECT * FROM '{run_dir}/06_pii/*.parquet'`",
                                 description="Where the outputs are")
    return rows


def publish_training(run_dir: str, result: dict[str, Any], storage_options: dict | None = None) -> None:
    png_path = shards.join(run_dir, "08_train", "loss.png")
    fs = shards.filesystem(png_path, storage_options)  # the run's options: an s3:// root needs its endpoint
    facts = {k: v for k, v in result.items() if isinstance(v, (int, float, str, bool))}
    table = "\n".join(f"| {k} | {v} |" for k, v in facts.items())
    image = ""
    if shards.exists(fs, png_path):
        data = base64.b64encode(shards.read_bytes(fs, png_path)).decode()
        image = f"![loss curve](data:image/png;base64,{data})\n\n"
    create_markdown_artifact(key=artifact_key("training", run_dir.rsplit("/", 2)[-2], run_dir.rsplit("/", 1)[-1]),
                             markdown=f"### Training\n\n{image}| | |\n|---|---|\n{table}\n",
                             description="Loss curve and final metrics")


def publish_token_stats(cfg, run_dir: str) -> dict[str, Any]:
    from pipeline_lib import pipeline, tokenization

    token_dir = pipeline.stage_dir(run_dir, "tokens")
    stats = tokenization.token_stats(pipeline.fs_for(cfg, token_dir), token_dir)
    create_markdown_artifact(key=artifact_key("token-stats", cfg.run.name, cfg.run.partition),
                             markdown=tokenization.token_stats_markdown(stats),
                             description="Tokens per document, bytes per token, totals")
    return stats
