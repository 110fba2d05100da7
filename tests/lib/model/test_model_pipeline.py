"""The model stage on shards made by the real tokens stage: a trained BPE and a tiktoken encoding."""

from __future__ import annotations

import shutil

import pyarrow as pa
import pytest

from pipeline_lib import shards, stage, tokenization
from pipeline_lib.config import parse_config
from pipeline_lib.model.sample import generate_text, load_checkpoint, top_next_tokens
from pipeline_lib.model.train import train


def _pii_shards(run_dir, speeches: list[str], per_shard: int = 200) -> None:
    pii_dir = str(run_dir / "06_pii")
    fs = shards.filesystem(pii_dir)
    for index, first in enumerate(range(0, len(speeches), per_shard)):
        part = speeches[first:first + per_shard]
        table = pa.table({"id": [f"d{first + i}" for i in range(len(part))], "text": part})
        name = shards.shard_name(index)
        entry = shards.write_table_file(fs, pii_dir, name + ".parquet", table)
        shards.write_manifest(fs, pii_dir, name, shards.build_manifest(
            stage="pii", name=name, files={"kept": entry}, schema=table.schema, counters={}, seconds=0.0,
            config_hash="test", inputs=[]))


def _tokenize(cfg, run_dir) -> None:
    fs = shards.filesystem(str(run_dir))
    tokenization.prepare_tokenizer(cfg, fs, str(run_dir))
    tokens_stage = stage.build_stage("tokens", cfg)
    for name in shards.list_shards(fs, str(run_dir / "06_pii")):
        stage.run_shard(tokens_stage, fs, str(run_dir / "06_pii"), str(run_dir / "07_tokens"), name)


def _config(tmp_path, tokenize: dict, train_knobs: dict):
    """A config whose run dir (data_root/name/partition) lies in tmp_path, as the tokens stage expects."""
    cfg = parse_config({"run": {"data_root": str(tmp_path), "name": "t", "partition": "p"},
                        "tokenize": tokenize, "train": train_knobs})
    from pathlib import Path

    return cfg, Path(cfg.run_dir)


def _speeches(shakespeare) -> list[str]:
    # The fixture's documents are byte lists; turn them back into text.
    return [bytes(d[:-1]).decode() for d in shakespeare(lambda s: list(s.encode()), 256, max_chars=60_000)]


def test_a_run_with_its_own_trained_tokenizer_yields_a_self_contained_checkpoint(tmp_path, shakespeare):
    cfg, run_dir = _config(tmp_path, {"source": "train", "train": {"vocab_size": 512}},
                           {"preset": "tiny", "max_steps": 30, "block_size": 32, "batch_size": 8,
                            "learning_rate": 1e-2, "eval_interval": 10, "device": "cpu"})
    _pii_shards(run_dir, _speeches(shakespeare))
    _tokenize(cfg, run_dir)
    fs = shards.filesystem(str(run_dir))
    result = train(cfg, fs, str(run_dir / "07_tokens"), str(run_dir / "08_train"))
    assert result["steps"] == 30 and result["val_loss"] is not None

    # Moved away from its run (and with the run's vocabulary gone), the checkpoint still decodes.
    moved = tmp_path / "elsewhere.pt"
    shutil.copy(result["checkpoint"], moved)
    shutil.rmtree(run_dir)
    model, tokenizer, ckpt = load_checkpoint(str(moved), device="cpu")
    assert ckpt["tokenizer"]["kind"] == "tiktoken_ranks" and tokenizer.n_vocab == 512
    assert model.config.vocab_size == 512 and model.config.padded_vocab_size == 512
    text = generate_text(model, tokenizer, "ROMEO:", max_new_tokens=20, seed=1)
    assert isinstance(text, str) and text
    assert tokenizer.decode(tokenizer.encode("ROMEO: hello")) == "ROMEO: hello"
    assert sum(r.prob for r in top_next_tokens(model, tokenizer, "I hope you", k=512)) == pytest.approx(1.0, abs=1e-4)


def test_a_run_with_a_pretrained_encoding_records_its_name(tmp_path, shakespeare, tiktoken_cache):
    cfg, run_dir = _config(tmp_path, {"source": "pretrained", "encoding": "gpt2"},
                           {"preset": "tiny", "max_steps": 2, "block_size": 16, "batch_size": 2, "device": "cpu"})
    _pii_shards(run_dir, _speeches(shakespeare)[:150])
    _tokenize(cfg, run_dir)
    result = train(cfg, shards.filesystem(str(run_dir)), str(run_dir / "07_tokens"), str(run_dir / "08_train"))
    model, tokenizer, ckpt = load_checkpoint(result["checkpoint"], device="cpu")
    assert ckpt["tokenizer"] == {"kind": "tiktoken", "encoding": "gpt2"}
    assert model.config.vocab_size == 50257 and model.config.padded_vocab_size == 50304


def test_shards_from_another_vocabulary_are_refused(tmp_path, shakespeare):
    train_knobs = {"preset": "tiny", "max_steps": 2, "block_size": 16, "device": "cpu"}
    cfg, run_dir = _config(tmp_path, {"source": "train", "train": {"vocab_size": 400}}, train_knobs)
    _pii_shards(run_dir, _speeches(shakespeare))
    _tokenize(cfg, run_dir)
    # The run's vocabulary is retrained with other settings after its shards were tokenized.
    retrained, _ = _config(tmp_path, {"source": "train", "train": {"vocab_size": 420}}, train_knobs)
    tokenization.prepare_tokenizer(retrained, shards.filesystem(str(run_dir)), str(run_dir))
    with pytest.raises(ValueError, match="not the one the token shards were made with"):
        train(retrained, shards.filesystem(str(run_dir)), str(run_dir / "07_tokens"), str(run_dir / "08_train"))
