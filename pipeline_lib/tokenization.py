"""Tokenization: clean documents -> token shards that training reads.

The vocabulary is one of three (``tokenize.source``):

- ``pretrained``: a tiktoken encoding by encoding name (``gpt2``, ``cl100k_base``...) or model name
  (``gpt-4o``). Offline, tiktoken reads its cache folder (``TIKTOKEN_CACHE_DIR``).
- ``dir``: a folder saved by ``crawl2model train-tokenizer``.
- ``train``: a byte-level BPE learned from this run's ``06_pii`` text by ``prepare_tokenizer`` and
  kept at ``<run_dir>/07_tokens/_tokenizer/``, so a demo needs no vocabulary file at all.

Every kind loads as a ``tiktoken.Encoding``. ``TokenizeStage`` writes one row per document:
``id``, ``tokens`` (list<uint16> when every id fits, else list<uint32>), ``n_tokens`` (with the
end-of-text token, which closes every document so that concatenated documents are separated).
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from itertools import chain
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline_lib import bpe_train, shards
from pipeline_lib.config import PipelineConfig
from pipeline_lib.schema import REJECT_REASON, STAGE_DIRS
from pipeline_lib.stage import Stage, StageResult

TOKENIZER_SUBDIR = "_tokenizer"
EOT = bpe_train.EOT
CACHE_HINT = ("tiktoken downloads vocabularies on first use; offline, set TIKTOKEN_CACHE_DIR to a folder holding "
              "the cached file (this project's copy: ../shared/data/tiktoken-cache), or train one with "
              "`crawl2model train-tokenizer` and use tokenize.source: dir")


# ---------------------------------------------------------------- loading vocabularies

@lru_cache(maxsize=8)
def load_pretrained(name: str):
    """A tiktoken encoding by encoding or model name; a clear ``ValueError`` if it cannot load."""
    import tiktoken

    try:
        if name in tiktoken.list_encoding_names():
            return tiktoken.get_encoding(name)
        return tiktoken.encoding_for_model(name)
    except KeyError:
        raise ValueError(f"unknown tiktoken encoding or model {name!r}; encodings: "
                         f"{', '.join(sorted(tiktoken.list_encoding_names()))}") from None
    except Exception as e:  # network refused, missing cache, corrupt file (tiktoken checks its sha256)
        raise ValueError(f"cannot load tiktoken encoding {name!r} ({type(e).__name__}: {e}); {CACHE_HINT}") from None


@lru_cache(maxsize=8)
def _load_dir_cached(path: str, storage_key: str, meta_sha: str):
    return bpe_train.load_tokenizer_dir(shards.filesystem(path, _options(storage_key)), path)


def _options(storage_key: str) -> dict:
    import json

    return json.loads(storage_key)


def load_tokenizer_dir(path: str, storage_options: dict | None = None, missing: str | None = None):
    """A saved tokenizer folder as a ``tiktoken.Encoding`` (cached per process while unchanged).

    ``missing``: the error message when the folder holds no tokenizer (default: how to make one).
    """
    import json

    key = json.dumps(storage_options or {}, sort_keys=True)
    meta = bpe_train.read_meta(shards.filesystem(path, storage_options or {}), path)
    if meta is None:
        raise ValueError(missing or f"{path}: not a saved tokenizer (no readable {bpe_train.META_FILE}); "
                                    "create one with `crawl2model train-tokenizer --out DIR`")
    return _load_dir_cached(path, key, meta.get("ranks_sha256", ""))


def load_encoding(spec: str, storage_options: dict | None = None):
    """``spec`` is a tiktoken encoding/model name, or a path to a saved tokenizer folder."""
    if "/" in spec or os.sep in spec or spec.startswith(".") or os.path.isdir(spec):
        return load_tokenizer_dir(spec, storage_options)
    return load_pretrained(spec)


def encoding_hash(enc) -> str:
    """sha256 of an encoding's ranks, split pattern and special tokens (what the manifest records)."""
    return _hash_cached(enc)


@lru_cache(maxsize=16)
def _hash_cached(enc) -> str:
    return bpe_train.ranks_sha256(enc._mergeable_ranks, enc._pat_str, dict(enc._special_tokens))


def eot_token(enc) -> int:
    if EOT not in enc.special_tokens_set:
        raise ValueError(f"encoding {enc.name!r} has no {EOT} token")
    return enc.encode_single_token(EOT)


def token_dtype(enc) -> pa.DataType:
    return pa.uint16() if enc.max_token_value <= np.iinfo(np.uint16).max else pa.uint32()


def trained_dir(run_dir: str) -> str:
    return shards.join(run_dir, STAGE_DIRS["tokens"], TOKENIZER_SUBDIR)


def tokenizer_spec(cfg: PipelineConfig, run_dir: str | None = None) -> str:
    """What ``load_encoding`` gets for this config: an encoding name or a folder."""
    t = cfg.tokenize
    if t.source == "pretrained":
        return t.encoding
    if t.source == "dir":
        return cfg.resolve_path(t.tokenizer_dir)
    return trained_dir(run_dir or cfg.run_dir)


def _storage_for(cfg: PipelineConfig, path: str) -> dict:
    return cfg.run.storage_options if "://" in path else {}


def encoding_for_config(cfg: PipelineConfig, run_dir: str | None = None):
    spec = tokenizer_spec(cfg, run_dir)
    if cfg.tokenize.source == "pretrained":
        return load_pretrained(spec)
    missing = (f"{spec}: the run's tokenizer is not trained yet; prepare_tokenizer runs before the tokens stage"
               if cfg.tokenize.source == "train" else None)
    return load_tokenizer_dir(spec, _storage_for(cfg, spec), missing=missing)  # meta.json read once


# ---------------------------------------------------------------- preparing (once per run)

def _train_signature(cfg: PipelineConfig, inputs: list[dict[str, Any]]) -> str:
    import json

    blob = json.dumps({"train": cfg.tokenize.train.model_dump(mode="json"), "inputs": inputs,
                       "format": bpe_train.FORMAT_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _tokens_input_dir(cfg: PipelineConfig, run_dir: str) -> str:
    """The folder the tokens stage reads (06_pii, or an earlier one when PII is switched off)."""
    from pipeline_lib.pipeline import input_dir  # the DAG plan; imported late, it imports stages lazily

    return input_dir(cfg, run_dir, "tokens")


def prepare_tokenizer(cfg: PipelineConfig, fs, run_dir: str, input_dir: str | None = None) -> dict[str, Any]:
    """Make sure the configured vocabulary is usable before any shard is tokenized.

    ``source: train`` learns a BPE from the shards the tokens stage will read (``06_pii``), unless
    the saved one already matches the training settings and those shards' checksums. Returns a
    small summary.
    """
    t = cfg.tokenize
    trained = False
    if t.source == "train":
        in_dir = input_dir or _tokens_input_dir(cfg, run_dir)
        names = shards.list_shards(fs, in_dir)
        inputs = []
        for name in names:
            m = shards.load_manifest(fs, in_dir, name)
            inputs.append({"shard": name, "sha256": m["files"]["kept"]["sha256"]})
        signature = _train_signature(cfg, inputs)
        out = trained_dir(run_dir)
        meta = bpe_train.read_meta(fs, out)
        if meta is None or meta.get("trained_on", {}).get("signature") != signature:
            texts = bpe_train.iter_training_texts(fs, [in_dir], max_bytes=t.train.max_train_bytes) if names else iter(())
            ranks, specials = bpe_train.train_bpe(texts, t.train.vocab_size, min_frequency=t.train.min_frequency,
                                                  pattern=t.train.pattern, special_tokens=t.train.special_tokens)
            name = f"bpe{t.train.vocab_size}-{cfg.run.name}-{cfg.run.partition}"
            bpe_train.save_tokenizer(fs, out, name, ranks, specials, t.train.pattern,
                                     trained_on={"signature": signature, "stage": in_dir.rstrip("/").rsplit("/", 1)[-1],
                                                 "shards": len(names)})
            trained = True
        enc = bpe_train.load_tokenizer_dir(fs, out)
    else:
        enc = encoding_for_config(cfg, run_dir)
    if t.append_eot:
        eot_token(enc)  # a vocabulary without <|endoftext|> fails here, before any shard
    return {"source": t.source, "encoding": enc.name, "n_vocab": enc.n_vocab, "ranks_sha256": encoding_hash(enc),
            "dtype": str(token_dtype(enc)), "trained": trained, "spec": tokenizer_spec(cfg, run_dir)}


# ---------------------------------------------------------------- the stage

def encode_documents(enc, texts: list[str], *, append_eot: bool = True, threads: int = 1) -> pa.ListArray:
    """Encode texts to a list<uint16|uint32> array, EOT closing each document.

    The flat id array is filled from tiktoken's lists in C (``np.fromiter`` over a chain), and
    the offsets come from the per-document lengths: no Python loop over tokens.
    """
    token_lists = enc.encode_ordinary_batch(texts, num_threads=max(1, threads))
    n_docs = len(token_lists)
    lengths = np.fromiter(map(len, token_lists), dtype=np.int64, count=n_docs)
    dtype = token_dtype(enc)
    np_dtype = np.uint16 if dtype == pa.uint16() else np.uint32
    if append_eot:
        lengths += 1
        eot = [eot_token(enc)]
        # One pass in C over each document's ids followed by the EOT (the generator runs per document).
        pieces = chain.from_iterable(chain.from_iterable((ids, eot) for ids in token_lists))
    else:
        pieces = chain.from_iterable(token_lists)
    offsets = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter(pieces, dtype=np_dtype, count=int(offsets[-1]))
    offset_type = pa.int32() if offsets[-1] < np.iinfo(np.int32).max else pa.int64()
    list_cls = pa.ListArray if offset_type == pa.int32() else pa.LargeListArray
    return list_cls.from_arrays(pa.array(offsets, offset_type), pa.array(flat, dtype))


def default_threads(cfg: PipelineConfig) -> int:
    if cfg.tokenize.threads:
        return cfg.tokenize.threads
    return max(1, (os.cpu_count() or 1) // max(1, cfg.run.workers))


class TokenizeStage(Stage):
    name = "tokens"
    section = "tokenize"

    def __init__(self, cfg: PipelineConfig):
        super().__init__(cfg)
        self._enc = None

    @property
    def encoding(self):
        # Stages are cached per worker process; a folder's vocabulary can be retrained between
        # runs, so it is looked up again each time (a small meta.json read, the ranks stay cached).
        if self._enc is None or self.cfg.tokenize.source != "pretrained":
            self._enc = encoding_for_config(self.cfg)
        return self._enc

    def config_hash(self) -> str:
        # A retrained vocabulary must redo the shards even when the config section is unchanged.
        blob = f"{super().config_hash()}:{encoding_hash(self.encoding)}"
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def manifest_extra(self) -> dict[str, Any]:
        enc = self.encoding
        return {"tokenizer": {"encoding": enc.name, "source": self.cfg.tokenize.source, "n_vocab": enc.n_vocab,
                              "ranks_sha256": encoding_hash(enc), "dtype": str(token_dtype(enc)),
                              "eot": eot_token(enc) if self.cfg.tokenize.append_eot else None}}

    def process(self, table: pa.Table) -> StageResult:
        enc = self.encoding
        text = table.column("text") if "text" in table.column_names else pa.nulls(table.num_rows, pa.string())
        text = text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text
        missing = pc.is_null(text)
        empty = pc.fill_null(pc.equal(pc.binary_length(text), 0), False)
        bad = pc.or_(missing, empty)
        n_bad = pc.sum(bad).as_py() or 0
        reasons = pc.if_else(missing, pa.scalar("text_missing"), pc.if_else(empty, pa.scalar("text_empty"), pa.scalar(None, pa.string())))
        good = table.filter(pc.invert(bad)) if n_bad else table
        if self.cfg.tokenize.shuffle_seed is not None and good.num_rows:
            good = good.take(self._permutation(good))
        # No text column at all: every row was rejected as text_missing above, and none is left.
        good_text = good.column("text") if "text" in good.column_names else pa.array([], pa.string())
        tokens = encode_documents(enc, good_text.to_pylist(), append_eot=self.cfg.tokenize.append_eot,
                                  threads=default_threads(self.cfg))
        n_tokens = pc.list_value_length(tokens).cast(pa.int32())
        kept = pa.table({"id": good.column("id"), "tokens": tokens, "n_tokens": n_tokens})
        rejected = table.filter(bad).append_column(REJECT_REASON, reasons.filter(bad))
        n_bytes = pc.sum(pc.binary_length(good_text)).as_py() or 0
        counters = {"tokens.docs": kept.num_rows, "tokens.tokens": int(pc.sum(n_tokens).as_py() or 0),
                    "tokens.text_bytes": int(n_bytes), "tokens.eot": kept.num_rows if self.cfg.tokenize.append_eot else 0}
        return StageResult(kept, rejected, counters)

    def _permutation(self, table: pa.Table) -> np.ndarray:
        # Seeded by (seed, the shard's first id) so each shard gets its own but reproducible order.
        first = table.column("id")[0].as_py() or ""
        digest = hashlib.sha256(f"{self.cfg.tokenize.shuffle_seed}:{first}".encode()).digest()
        return np.random.default_rng(int.from_bytes(digest[:8], "little")).permutation(table.num_rows)


# ---------------------------------------------------------------- shuffling across shards

# ---------------------------------------------------------------- run statistics

def token_stats(fs, tokens_dir: str) -> dict[str, Any]:
    """Totals and the tokens-per-document distribution over all token shards of a run."""
    names = shards.list_shards(fs, tokens_dir)
    counts, text_bytes, eot_total, encodings = [], 0, 0, set()
    for name in names:
        manifest = shards.load_manifest(fs, tokens_dir, name)
        text_bytes += manifest["counters"].get("tokens.text_bytes", 0)
        eot_total += manifest["counters"].get("tokens.eot", 0)
        if "tokenizer" in manifest:
            encodings.add(manifest["tokenizer"]["encoding"])
        counts.append(shards.read_verified(fs, tokens_dir, name, columns=["n_tokens"], manifest=manifest)
                      .column("n_tokens").to_numpy())
    per_doc = np.concatenate(counts) if counts else np.zeros(0, dtype=np.int32)
    total = int(per_doc.sum())
    stats: dict[str, Any] = {"shards": len(names), "documents": int(len(per_doc)), "total_tokens": total,
                             "text_bytes": int(text_bytes), "encoding": ", ".join(sorted(encodings)) or None,
                             # per text token: the end-of-text markers carry no bytes
                             "bytes_per_token": round(text_bytes / (total - eot_total), 4) if total > eot_total else None}
    if len(per_doc):
        stats.update({"tokens_per_doc_min": int(per_doc.min()), "tokens_per_doc_median": float(np.median(per_doc)),
                      "tokens_per_doc_p90": float(np.percentile(per_doc, 90)), "tokens_per_doc_max": int(per_doc.max()),
                      "tokens_per_doc_mean": round(float(per_doc.mean()), 2)})
    return stats


def token_stats_markdown(stats: dict[str, Any]) -> str:
    """The stats as a two-column Markdown table (the body of the Prefect artifact)."""
    labels = [("encoding", "encoding"), ("shards", "shards"), ("documents", "documents"),
              ("total_tokens", "total tokens"), ("text_bytes", "text bytes"), ("bytes_per_token", "bytes per token"),
              ("tokens_per_doc_min", "tokens/doc min"), ("tokens_per_doc_median", "tokens/doc median"),
              ("tokens_per_doc_p90", "tokens/doc p90"), ("tokens_per_doc_max", "tokens/doc max"),
              ("tokens_per_doc_mean", "tokens/doc mean")]
    rows = [f"| {label} | {stats[key]:,} |" if isinstance(stats.get(key), int) else f"| {label} | {stats.get(key)} |"
            for key, label in labels if key in stats]
    return "\n".join(["| token shards | |", "| --- | --- |", *rows])
