"""Token shards for the model tests, written the way the tokens stage writes them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from pipeline_lib import shards
from pipeline_lib.config import parse_config

SHAKESPEARE = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "corpus" / "tinyshakespeare_input.txt"


@pytest.fixture(autouse=True)
def _few_threads():
    # Two cores are shared by everyone on this machine; torch would take both per test.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def write_token_shards(token_dir: str, docs: list[list[int]], tokenizer: dict, docs_per_shard: int = 50) -> None:
    fs = shards.filesystem(token_dir)
    dtype = pa.uint16() if max((max(d) for d in docs if d), default=0) < 2**16 else pa.uint32()
    for index, first in enumerate(range(0, len(docs), docs_per_shard)):
        part = docs[first:first + docs_per_shard]
        table = pa.table({
            "id": pa.array([f"doc-{first + i}" for i in range(len(part))]),
            "tokens": pa.array(part, pa.list_(dtype)),
            "n_tokens": pa.array([len(d) for d in part], pa.int32()),
        })
        name = shards.shard_name(index)
        entry = shards.write_table_file(fs, token_dir, name + ".parquet", table)
        manifest = shards.build_manifest(stage="tokens", name=name, files={"kept": entry}, schema=table.schema,
                                         counters={}, seconds=0.0, config_hash="test", inputs=[],
                                         extra={"tokenizer": tokenizer})
        shards.write_manifest(fs, token_dir, name, manifest)


def shakespeare_documents(encode, eot: int, max_chars: int | None = None) -> list[list[int]]:
    """The play split at blank lines into speeches, each closed by an end-of-text token."""
    if not SHAKESPEARE.is_file():
        pytest.skip(f"{SHAKESPEARE} is not present")
    text = SHAKESPEARE.read_text(encoding="utf-8")[:max_chars]
    return [encode(speech) + [eot] for speech in text.split("\n\n") if speech.strip()]


@pytest.fixture
def byte_run(tmp_path):
    """A run dir whose 07_tokens holds byte-level shards of the first 200 kB of Shakespeare."""
    docs = shakespeare_documents(lambda s: list(s.encode()), 256, max_chars=200_000)
    run_dir = tmp_path / "run"
    write_token_shards(str(run_dir / "07_tokens"), docs, {"kind": "bytes"})
    return run_dir


def tiny_config(**train):
    base = {"preset": "tiny", "max_steps": 20, "batch_size": 8, "block_size": 32, "learning_rate": 3e-3,
            "warmup_steps": 2, "eval_interval": 5, "eval_batches": 2, "checkpoint_interval": 10, "device": "cpu"}
    base.update(train)
    return parse_config({"train": base})


@pytest.fixture(scope="session")
def shard_writer():
    return write_token_shards


@pytest.fixture(scope="session")
def make_config():
    return tiny_config


@pytest.fixture(scope="session")
def shakespeare():
    return shakespeare_documents
