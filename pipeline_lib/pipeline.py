"""The DAG as plain data and functions: which stage reads which folder, and one-shard entry points.

Flows in ``flows/`` decide *when* things run (and retry them); this module decides *what* runs.
Every function takes small, picklable arguments (a config as JSON, paths, shard names) so it can
run in a worker process or on a Dask worker and return a small summary dict.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pipeline_lib import shards
from pipeline_lib.config import PipelineConfig, dump_config
from pipeline_lib.schema import STAGE_DIRS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConfigRef:
    """A config that travels to workers: its JSON plus the folder relative paths resolve against."""

    json: str
    base_dir: str

    @classmethod
    def of(cls, cfg: PipelineConfig) -> "ConfigRef":
        return cls(cfg.model_dump_json(), cfg.base_dir)

    def load(self) -> PipelineConfig:
        return PipelineConfig.from_json(self.json, self.base_dir)


# Per-document stages in pipeline order (dedup is the global one in the middle).
CURATION_STAGES = ["urlfilter", "extract", "langid", "quality"]
ORDER = ["crawl", "urlfilter", "extract", "langid", "quality", "dedup", "pii", "tokens", "train"]


def stage_dir(run_dir: str, key: str) -> str:
    return shards.join(run_dir, STAGE_DIRS[key])


def enabled(cfg: PipelineConfig, key: str) -> bool:
    if key in ("crawl", "tokens"):
        return True
    if cfg.source.kind == "docs" and key in ("urlfilter", "extract"):
        return False  # cleaned documents enter the DAG at 02_extract
    section = {"tokens": "tokenize"}.get(key, key)
    return bool(getattr(getattr(cfg, section), "enabled", True))


def chain_dirs(cfg: PipelineConfig) -> list[str]:
    """The stage folders this config's run writes, in order: the source's, then every enabled stage."""
    source = "02_extract" if cfg.source.kind == "docs" else "00_crawl"
    return [d for key, d in STAGE_DIRS.items() if d == source or (enabled(cfg, key) and d > source)]


def source_dir(cfg: PipelineConfig, run_dir: str) -> str:
    """Where the source's shards land: pages at 00_crawl, cleaned documents at 02_extract."""
    return stage_dir(run_dir, "extract" if cfg.source.kind == "docs" else "crawl")


def input_dir(cfg: PipelineConfig, run_dir: str, key: str) -> str:
    """The output folder of the nearest earlier stage that runs (a disabled stage is skipped over)."""
    idx = ORDER.index(key)
    src = source_dir(cfg, run_dir)
    for prev in reversed(ORDER[1:idx]):
        d = stage_dir(run_dir, prev)
        if d == src:
            return src
        if enabled(cfg, prev):
            return d
    return src


def prepare_run(cfg: PipelineConfig) -> str:
    """Create the run dir and record the resolved config, paths made absolute (rewritten only if it changed)."""
    run_dir = cfg.run_dir
    fs = fs_for(cfg, run_dir)
    fs.makedirs(fs._strip_protocol(run_dir), exist_ok=True)
    path = shards.join(run_dir, "config.yaml")
    text = dump_config(cfg.resolved()).encode()  # absolute paths: `crawl2model train --run-dir` loads it as is
    if not shards.exists(fs, path) or shards.read_bytes(fs, path) != text:
        shards.write_bytes_atomic(fs, path, text)
    return run_dir


def fs_for(cfg: PipelineConfig, path: str):
    return shards.filesystem(path, cfg.run.storage_options)


def list_input_shards(ref: ConfigRef, run_dir: str, key: str) -> list[str]:
    """The input stage's complete shards; a ShardError when some are still being written (another
    run of this partition is redoing that stage) or were cut short: skipping them would lose
    their documents without a trace."""
    cfg = ref.load()
    d = input_dir(cfg, run_dir, key)
    fs = fs_for(cfg, d)
    names = shards.list_shards(fs, d)
    unfinished = sorted(set(shards.list_data_names(fs, d)) - set(names))
    if unfinished:
        raise shards.ShardError(f"{d}: {len(unfinished)} shards without a manifest ({', '.join(unfinished[:5])}): "
                                "being written by another run of this partition, or cut short; run the stage "
                                "that writes them to the end first")
    return names


def begin_stage(ref: ConfigRef, run_dir: str, key: str) -> list[str]:
    """Before a stage maps over shards: clear leftovers of killed writes (never read as shards), and
    remove its output shards whose input shard is gone (a source file read again into fewer shards),
    which later stages, and dedup's clustering through its signatures, would still read as documents.
    Returns the names of the shards removed."""
    cfg = ref.load()
    d = stage_dir(run_dir, key)
    fs = fs_for(cfg, d)
    shards.remove_temp_files(fs, d)
    in_dir = input_dir(cfg, run_dir, key)
    in_stage = in_dir.rstrip("/").rsplit("/", 1)[-1]
    in_fs = fs_for(cfg, in_dir)
    # An input shard whose manifest is missing but whose data file is there is being rewritten (the
    # manifest goes first), not gone: its outputs stay.
    inputs = set(shards.list_shards(in_fs, in_dir)) | set(shards.list_data_names(in_fs, in_dir))
    outputs = [d] + ([shards.join(d, "_signatures")] if key == "dedup" else [])
    removed = []
    for out in outputs:
        complete = shards.list_shards(fs, out)
        # A data file without a manifest (a killed write) whose input shard is gone would otherwise
        # stay, and make the next stage wait forever for a shard nobody will finish.
        for name in sorted(set(shards.list_data_names(fs, out)) - set(complete) - inputs):
            shards.remove_shard(fs, out, name)
            removed.append(name)
        for name in complete:
            if name in inputs:
                continue
            # Only a shard made from this very input folder: one made from another (a stage enabled
            # or disabled since, whose folder may not even be written yet) is not an orphan.
            made_from = (shards.load_manifest(fs, out, name) or {}).get("inputs") or [{}]
            if made_from[0].get("stage") == in_stage:
                shards.remove_shard(fs, out, name)
                removed.append(name)
    if removed:
        log.warning("%s: removed %d output shards whose input shard is gone: %s", d, len(removed),
                    ", ".join(sorted(set(removed))[:10]))
    return removed


def run_stage_shard(ref: ConfigRef, run_dir: str, key: str, name: str) -> dict[str, Any]:
    """Run one per-document stage on one shard (skips if its manifest already matches)."""
    from pipeline_lib.stage import build_stage, run_shard

    cfg = ref.load()
    stage = build_stage(key, cfg)
    in_dir, out_dir = input_dir(cfg, run_dir, key), stage_dir(run_dir, key)
    return run_shard(stage, fs_for(cfg, out_dir), in_dir, out_dir, name)


def source_jobs(ref: ConfigRef, run_dir: str) -> list:
    """The source's input files (WARC listings expanded), one ``IngestJob`` each, in input order.

    A job's position fixes its shard numbers, so the jobs can run in any order or all at once. The
    list is checked against (and recorded in) the source folder's ingest state before it is
    returned (``ingest.prepare``): a changed input list or reader option is refused here.
    """
    from pipeline_lib.crawl.ingest import prepare

    cfg = ref.load()
    out = source_dir(cfg, run_dir)
    jobs = _source_job_list(cfg, out)
    if not jobs:
        return []
    fs = fs_for(cfg, out)
    # Leftovers of killed writes go now, before any job (or, with crawl+warc, the crawl) writes here.
    shards.remove_temp_files(fs, out)
    prepare(jobs, fs)
    return jobs


def _source_job_list(cfg: PipelineConfig, out: str) -> list:
    from pipeline_lib.crawl.ingest import WARC_FIRST_SHARD, jobs_for
    from pipeline_lib.crawl.warc import expand_inputs

    src, options = cfg.source, cfg.run.storage_options
    if src.kind == "docs":
        return jobs_for("docs", cfg.source_paths("docs_paths"), out, src.records_per_shard, options, 0,
                        out.rstrip("/").rsplit("/", 1)[-1], src.text_column, src.url_column)
    if "warc" in src.kind:
        return jobs_for("warc", expand_inputs(cfg.source_paths("warc_paths"), options), out, src.records_per_shard,
                        options, WARC_FIRST_SHARD if src.kind == "crawl+warc" else 0)
    return []


def check_source_state(cfg: PipelineConfig) -> None:
    """Refuse now, before any flow starts, a source with nothing to read (ConfigError: a crawl
    without seeds ran every stage on nothing and failed at training) and a source folder whose
    ingest state this config contradicts (ValueError: other records per shard, reader options or
    input list; found inside the crawl flow, the one-line error came after two Prefect tracebacks).
    A new folder needs no state check."""
    from pipeline_lib.config import ConfigError
    from pipeline_lib.crawl.ingest import _layout_path, prepare

    # crawl+warc with WARC files and no seeds is a WARC ingest numbered beside a crawl: allowed.
    if not cfg.crawl.seeds and (cfg.source.kind == "crawl" or (cfg.source.kind == "crawl+warc"
                                                               and not cfg.source.warc_paths)):
        raise ConfigError(f"crawl.seeds is empty: source.kind {cfg.source.kind} needs start URLs (crawl.seeds, "
                          "'{sample_site}' for the bundled site), or set source.kind to warc or docs")
    out = source_dir(cfg, cfg.run_dir)
    fs = fs_for(cfg, out)
    if cfg.source.kind == "crawl" or not shards.exists(fs, _layout_path(out)):
        return
    prepare(_source_job_list(cfg, out), fs, write=False)


def ingest_source_file(job) -> dict[str, Any]:
    """One source file into its shards (skipped when already done); runs in a worker process."""
    from pipeline_lib.crawl.ingest import run_job

    return run_job(job)


def run_crawl_source(ref: ConfigRef, run_dir: str, progress=None) -> dict[str, Any] | None:
    """The crawl part of the source (None when the source does not crawl)."""
    cfg = ref.load()
    if "crawl" not in cfg.source.kind:
        return None
    return _crawl_with_sample_site(cfg, fs_for(cfg, run_dir), source_dir(cfg, run_dir), progress)


def finish_source(ref: ConfigRef, crawl_summary: dict[str, Any] | None, file_results: list[dict[str, Any]]) -> dict:
    """The source's summary by kind: ``crawl``, ``warc`` (``pages``) and/or ``docs`` (``docs``)."""
    from pipeline_lib.crawl.ingest import summarize

    kind = ref.load().source.kind
    summaries: dict[str, Any] = {}
    if crawl_summary is not None:
        summaries["crawl"] = crawl_summary
    if kind == "docs" or "warc" in kind:
        name, count = ("docs", "docs") if kind == "docs" else ("warc", "pages")
        summary = summarize(file_results)
        summary[count] = summary.pop("kept")
        summaries[name] = summary
    return summaries


def failed_files_lines(summary: dict[str, Any]) -> list[str]:
    """What to tell the user when input files failed as a whole (missing, cut short, unreadable):
    a line for the count, then one per file with its reason. Empty when none failed."""
    failed = summary.get("files_failed", 0)
    if not failed:
        return []
    lines = [f"error: {failed} of {summary['files']} input files failed as a whole; rerun once fixed: only they "
             "are read again"]
    return lines + [f"  {path}: {why[:300]}" for path, why in summary.get("failures", {}).items()]


def run_failures(results: dict[str, Any]) -> list[str]:
    """failed_files_lines for every source kind of a pipeline result (``results["crawl"]``)."""
    return [line for summary in (results.get("crawl") or {}).values() if isinstance(summary, dict)
            for line in failed_files_lines(summary)]


def run_source(ref: ConfigRef, run_dir: str, progress=None, map_jobs=None) -> dict[str, Any]:
    """Fill the source folder: crawl (with the bundled site when enabled), WARC or cleaned documents.

    ``map_jobs(fn, jobs)``: how the per-file ingest jobs run (e.g. on the worker pool); default one
    after another here. The pipeline's crawl flow does the same with one task per file.
    """
    jobs = source_jobs(ref, run_dir)
    crawl_summary = run_crawl_source(ref, run_dir, progress)
    results = map_jobs(ingest_source_file, jobs) if map_jobs else [ingest_source_file(j) for j in jobs]
    return finish_source(ref, crawl_summary, results)


def _crawl_with_sample_site(cfg: PipelineConfig, fs, out: str, progress) -> dict[str, Any]:
    from contextlib import nullcontext

    from pipeline_lib import crawl

    site = cfg.crawl.sample_site
    if site.enabled:
        from pipeline_lib.sample_site.server import serve_sample_site

        ctx = serve_sample_site(site.port)
    else:
        ctx = nullcontext(None)
    with ctx as base_url:
        if base_url:
            seeds = [s.replace("{sample_site}", base_url) for s in cfg.crawl.seeds]
            allow = sorted(set(cfg.crawl.allow_private_hosts) | {"127.0.0.1"})
            crawl_cfg = cfg.crawl.model_copy(update={"seeds": seeds, "allow_private_hosts": allow})
            cfg = cfg.model_copy(update={"crawl": crawl_cfg})
        return crawl.run_crawl(cfg, fs, out, progress=progress)


# Dedup is the one global stage: signatures per shard (map), one clustering (reduce), filter (map).
def _dedup_dirs(cfg: PipelineConfig, run_dir: str) -> tuple[str, str, str, str]:
    out = stage_dir(run_dir, "dedup")
    return input_dir(cfg, run_dir, "dedup"), shards.join(out, "_signatures"), shards.join(out, "_clusters"), out


def dedup_signatures_shard(ref: ConfigRef, run_dir: str, name: str) -> dict[str, Any]:
    from pipeline_lib import dedup

    cfg = ref.load()
    in_dir, sig_dir, _, _ = _dedup_dirs(cfg, run_dir)
    return dedup.run_signatures_shard(cfg, fs_for(cfg, run_dir), in_dir, sig_dir, name)


def dedup_cluster(ref: ConfigRef, run_dir: str) -> dict[str, Any]:
    from pipeline_lib import dedup

    cfg = ref.load()
    _, sig_dir, clusters_dir, _ = _dedup_dirs(cfg, run_dir)
    return dedup.run_clustering(cfg, fs_for(cfg, run_dir), sig_dir, clusters_dir)


def dedup_filter_shard(ref: ConfigRef, run_dir: str, name: str) -> dict[str, Any]:
    from pipeline_lib import dedup

    cfg = ref.load()
    in_dir, _, clusters_dir, out_dir = _dedup_dirs(cfg, run_dir)
    return dedup.run_filter_shard(cfg, fs_for(cfg, run_dir), in_dir, clusters_dir, out_dir, name)


def prepare_tokenizer(ref: ConfigRef, run_dir: str) -> dict[str, Any]:
    from pipeline_lib import tokenization

    cfg = ref.load()
    return tokenization.prepare_tokenizer(cfg, fs_for(cfg, run_dir), run_dir)


def run_train(ref: ConfigRef, run_dir: str, progress=None) -> dict[str, Any]:
    from pipeline_lib.model.train import train

    cfg = ref.load()
    return train(cfg, fs_for(cfg, run_dir), stage_dir(run_dir, "tokens"), stage_dir(run_dir, "train"), progress=progress)
