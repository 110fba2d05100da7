"""Which tokenizer made the token shards, in a form a checkpoint can carry.

A checkpoint must decode its own samples wherever it is copied, so the spec is self-contained:

    {"kind": "tiktoken", "encoding": "gpt2"}          a pretrained tiktoken encoding (by name)
    {"kind": "tiktoken_ranks", "name", "pattern",      a vocabulary trained for the run (or read
     "special_tokens", "ranks", "ranks_sha256"}         from a folder), embedded whole
    {"kind": "bytes"}                                  raw UTF-8 bytes (tests, byte-level runs)
    {"kind": "ids", "n_vocab": N}                      bare ids, no text (synthetic benchmark data)

The token shards' manifests say which encoding they used (``tokenization.TokenizeStage``
records name, source and the ranks' sha256); the vocabulary itself is loaded the way the
tokenization stage loads it, and its hash is checked against the manifest.
"""

from __future__ import annotations

from typing import Any

from pipeline_lib.config import PipelineConfig


def resolve_tokenizer_spec(cfg: PipelineConfig, fs, manifest_info: dict[str, Any] | None,
                           run_dir: str | None = None) -> dict[str, Any]:
    info = dict(manifest_info or {})
    if "kind" in info:  # already a spec (written by this module's callers or tests)
        return info
    source = info.get("source") or cfg.tokenize.source
    if source == "pretrained" and info.get("encoding", cfg.tokenize.encoding):
        spec = {"kind": "tiktoken", "encoding": info.get("encoding", cfg.tokenize.encoding)}
        _check_hash(spec, info)
        return spec
    from pipeline_lib import bpe_train, tokenization

    enc = tokenization.encoding_for_config(cfg, run_dir)
    spec = {
        "kind": "tiktoken_ranks", "name": enc.name, "pattern": enc._pat_str,
        "special_tokens": {k: int(v) for k, v in enc._special_tokens.items()},
        "ranks": bpe_train.ranks_to_text(enc._mergeable_ranks).decode("ascii"),
        "ranks_sha256": tokenization.encoding_hash(enc),
    }
    _check_hash(spec, info)
    return spec


def _check_hash(spec: dict[str, Any], info: dict[str, Any]) -> None:
    """The vocabulary found now must be the one the shards were tokenized with."""
    expected = info.get("ranks_sha256")
    if not expected:
        return
    if spec["kind"] == "tiktoken_ranks":
        actual = spec["ranks_sha256"]
    else:
        try:
            from pipeline_lib import tokenization

            actual = tokenization.encoding_hash(tokenization.load_pretrained(spec["encoding"]))
        except ImportError:
            return
    if actual != expected:
        raise ValueError(f"the tokenizer found now ({actual[:12]}) is not the one the token shards were made "
                         f"with ({expected[:12]}); retokenize or point tokenize.* at the original vocabulary")
