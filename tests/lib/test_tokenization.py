"""Tokenization: pretrained tiktoken encodings, a BPE trained here, token shards, stats, the CLI."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline_lib import bpe_train, shards, tokenization
from pipeline_lib.config import parse_config
from pipeline_lib.guard import read_attempts
from pipeline_lib.schema import STAGE_DIRS
from pipeline_lib.stage import StageResult, run_shard, write_result

WORDS = ("the quick brown fox jumps over lazy dog and then runs into forest where another fox "
         "sleeps under old tree near river bank while birds sing songs about summer rain").split()


def _corpus(n_docs: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))).capitalize() + "."
                     for _ in range(rng.randint(1, 5))]
        docs.append(" ".join(sentences) + f" Number {rng.randint(0, 99999)}.")
    return docs


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[str, object]:
    out = str(tmp_path_factory.mktemp("tok") / "small-bpe")
    ranks, specials = bpe_train.train_bpe(_corpus(300), 400, special_tokens=["<|endoftext|>", "<|pad|>"])
    bpe_train.save_tokenizer(shards.filesystem(out), out, "small-bpe", ranks, specials, "cl100k")
    return out, tokenization.load_tokenizer_dir(out)


def _write_docs(fs, stage_dir: str, name: str, table: pa.Table) -> None:
    write_result(fs, stage_dir, name, STAGE_DIRS["pii"], table.num_rows, StageResult.keep_all(table), "h", [], 0.0)


def _docs_table(texts, start: int = 0) -> pa.Table:
    return pa.table({"id": [f"doc{start + i}" for i in range(len(texts))], "text": texts})


# ---------------------------------------------------------------- trained BPE

def test_trained_tokenizer_has_all_bytes_specials_after_ranks_and_learns_merges(trained):
    _, enc = trained
    assert enc.n_vocab == 400
    assert enc.encode_single_token("<|endoftext|>") == 398 and enc.encode_single_token("<|pad|>") == 399
    for b in range(256):
        assert enc.encode_single_token(bytes([b])) is not None
    # Frequent corpus words became single tokens; an unseen word falls back to smaller pieces.
    assert len(enc.encode_ordinary(" forest")) == 1
    assert len(enc.encode_ordinary(" xylophone")) > 3


def test_training_is_deterministic_and_records_a_checked_hash(tmp_path, trained):
    ranks_a, sp_a = bpe_train.train_bpe(_corpus(300), 400, special_tokens=["<|endoftext|>", "<|pad|>"])
    path, enc = trained
    assert bpe_train.ranks_sha256(ranks_a, enc._pat_str, sp_a) == bpe_train.read_meta(shards.filesystem(path), path)["ranks_sha256"]
    # A ranks file edited behind the meta's back is refused with a clear message.
    out = str(tmp_path / "tampered")
    fs = shards.filesystem(out)
    bpe_train.save_tokenizer(fs, out, "t", ranks_a, sp_a, "cl100k")
    lines = (tmp_path / "tampered" / bpe_train.RANKS_FILE).read_bytes().splitlines()
    (tmp_path / "tampered" / bpe_train.RANKS_FILE).write_bytes(b"\n".join(lines[:-1]) + b"\n")
    with pytest.raises(ValueError, match="does not match"):
        bpe_train.load_tokenizer_dir(fs, out)


def test_vocab_too_small_and_missing_folder_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="too small"):
        bpe_train.train_bpe(["abc"], 200)
    with pytest.raises(ValueError, match="train-tokenizer"):
        tokenization.load_tokenizer_dir(str(tmp_path / "nothing"))


def test_trainer_split_matches_tiktoken_split(trained):
    """The trainer's Oniguruma regex must cut text where tiktoken's regex does at encode time."""
    import regex
    from tokenizers import Regex, pre_tokenizers

    split = pre_tokenizers.Split(Regex(bpe_train._TRAINER_PATTERNS["cl100k"]), behavior="isolated")
    text = "Hello world's 12345 ok\n\n  x  \tdon't YOU'LL  £3.50!!\n(naïve) 😀 東京 end   "
    theirs = [p for p, _ in split.pre_tokenize_str(text)]
    ours = regex.findall(bpe_train.PATTERNS["cl100k"], text)
    assert theirs == ours


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text())
def test_trained_round_trip_any_unicode(trained, text):
    _, enc = trained
    assert enc.decode(enc.encode_ordinary(text)) == text


# ---------------------------------------------------------------- pretrained encodings

@pytest.mark.parametrize("name", ["gpt2", "r50k_base", "cl100k_base", "o200k_base"])
def test_pretrained_round_trip_any_unicode(tiktoken_cache, name):
    enc = tokenization.load_pretrained(name)

    @settings(max_examples=60, deadline=None)
    @given(st.text())
    def check(text):
        assert enc.decode(enc.encode_ordinary(text)) == text

    check()


def test_a_shard_without_a_text_column_is_rejected_row_by_row(tiktoken_cache):
    for shuffle in (None, 7):
        stage = tokenization.TokenizeStage(parse_config({"tokenize": {"encoding": "gpt2", "shuffle_seed": shuffle}}))
        result = stage.process(pa.table({"id": ["a", "b"], "url": ["u", "v"]}))
        assert result.kept.num_rows == 0 and result.kept.column_names == ["id", "tokens", "n_tokens"]
        assert result.rejected.column("reject_reason").to_pylist() == ["text_missing"] * 2


def test_model_name_resolves_to_its_encoding(tiktoken_cache):
    assert tokenization.load_pretrained("gpt-4o").name == "o200k_base"
    with pytest.raises(ValueError, match="unknown tiktoken encoding or model 'no-such-model'"):
        tokenization.load_pretrained("no-such-model")


def test_stage_with_gpt2_writes_uint16_tokens_closed_by_eot(tiktoken_cache):
    cfg = parse_config({"tokenize": {"encoding": "gpt2", "threads": 2}})
    stage = tokenization.TokenizeStage(cfg)
    table = pa.table({"id": ["a", "b", "c", "d"], "url": ["u"] * 4,
                      "text": ["hello world", None, "", "I love machine learning! <|endoftext|>"]})
    result = stage.process(table)
    assert result.kept.column_names == ["id", "tokens", "n_tokens"]
    assert result.kept.schema.field("tokens").type == pa.list_(pa.uint16())
    rows = result.kept.to_pylist()
    assert [r["id"] for r in rows] == ["a", "d"]
    assert rows[0]["tokens"] == [31373, 995, 50256]
    # Special-token text inside a document is ordinary text, never a real EOT.
    assert rows[1]["tokens"].count(50256) == 1 and rows[1]["tokens"][-1] == 50256
    assert [r["n_tokens"] for r in rows] == [len(r["tokens"]) for r in rows]
    assert dict(zip(result.rejected.column("id").to_pylist(), result.rejected.column("reject_reason").to_pylist())) == {
        "b": "text_missing", "c": "text_empty"}
    enc = stage.encoding
    assert enc.decode(rows[1]["tokens"][:-1]) == "I love machine learning! <|endoftext|>"
    assert result.counters["tokens.tokens"] == sum(r["n_tokens"] for r in rows)
    assert result.counters["tokens.text_bytes"] == len("hello world") + len("I love machine learning! <|endoftext|>")
    extra = stage.manifest_extra()["tokenizer"]
    assert extra["encoding"] == "gpt2" and extra["eot"] == 50256 and len(extra["ranks_sha256"]) == 64


def test_large_vocab_uses_uint32_and_done_check_ids(tiktoken_cache):
    enc = tokenization.load_pretrained("cl100k_base")
    arr = tokenization.encode_documents(enc, ["I love machine learning!"], append_eot=False)
    assert arr.type == pa.list_(pa.uint32())
    assert arr.to_pylist() == [[40, 3021, 5780, 6975, 0]]


def test_encode_documents_matches_per_document_encoding(trained):
    _, enc = trained
    texts = _corpus(50, seed=3) + ["", "x"]
    arr = tokenization.encode_documents(enc, texts, append_eot=True, threads=2)
    eot = enc.encode_single_token("<|endoftext|>")
    assert arr.to_pylist() == [enc.encode_ordinary(t) + [eot] for t in texts]
    assert tokenization.encode_documents(enc, [], append_eot=True).to_pylist() == []


def test_unloadable_vocabulary_is_a_clear_error_at_start(tmp_path, repo_root):
    # An empty cache, and the project's no-egress guard (tests/reliability/egress_site) in the CLI
    # process: tiktoken's download is always refused, whether or not this machine has a network.
    log = tmp_path / "egress.jsonl"
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(tmp_path / "empty-cache"),
           "PYTHONPATH": os.pathsep.join([str(repo_root / "tests" / "reliability" / "egress_site"), str(repo_root)]
                                         + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])),
           "CRAWL2MODEL_NO_EGRESS": "1", "CRAWL2MODEL_EGRESS_LOG": str(log)}
    proc = subprocess.run([sys.executable, "-m", "crawl2model.cli", "tokens", "hi", "--encoding", "r50k_base"],
                          cwd=repo_root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "r50k_base" in proc.stderr and "TIKTOKEN_CACHE_DIR" in proc.stderr and "Traceback" not in proc.stderr
    # The guard ran in that process and refused the download (so the error above is the offline one).
    entries = read_attempts(str(log))
    assert any(e["kind"] == "installed" for e in entries), entries
    assert any(e["kind"] != "installed" and "openaipublic" in e["target"] for e in entries), entries


# ---------------------------------------------------------------- a run: prepare, stage, stats

def _run_cfg(tmp_path, **tokenize):
    return parse_config({"run": {"data_root": str(tmp_path), "name": "t", "partition": "p", "workers": 1},
                         "tokenize": tokenize})


def test_run_trains_its_own_tokenizer_once_and_writes_token_shards(tmp_path):
    cfg = _run_cfg(tmp_path, source="train", train={"vocab_size": 320})
    run_dir = cfg.run_dir
    fs = shards.filesystem(run_dir)
    pii_dir, tok_dir = shards.join(run_dir, STAGE_DIRS["pii"]), shards.join(run_dir, STAGE_DIRS["tokens"])
    _write_docs(fs, pii_dir, "part-00000", _docs_table(_corpus(40, seed=1)))
    _write_docs(fs, pii_dir, "part-00001", _docs_table(_corpus(30, seed=2) + [None], start=100))

    first = tokenization.prepare_tokenizer(cfg, fs, run_dir)
    assert first["trained"] and first["n_vocab"] == 320 and first["dtype"] == "uint16"
    assert tokenization.prepare_tokenizer(cfg, fs, run_dir)["trained"] is False  # same inputs: kept

    stage = tokenization.TokenizeStage(cfg)
    summaries = [run_shard(stage, fs, pii_dir, tok_dir, n) for n in ("part-00000", "part-00001")]
    assert [s["kept"] for s in summaries] == [40, 30] and summaries[1]["rejected"] == 1
    manifest = shards.load_manifest(fs, tok_dir, "part-00000")
    assert manifest["tokenizer"]["ranks_sha256"] == first["ranks_sha256"]
    table = shards.read_verified(fs, tok_dir, "part-00000")
    enc = tokenization.load_tokenizer_dir(tokenization.trained_dir(run_dir))
    assert [enc.decode(t[:-1]) for t in table.column("tokens").to_pylist()] == _corpus(40, seed=1)
    assert run_shard(stage, fs, pii_dir, tok_dir, "part-00000")["skipped"]

    stats = tokenization.token_stats(fs, tok_dir)
    n = np.array(table.column("n_tokens").to_pylist() + shards.read_verified(fs, tok_dir, "part-00001").column("n_tokens").to_pylist())
    assert stats["documents"] == 70 and stats["total_tokens"] == int(n.sum())
    assert stats["tokens_per_doc_min"] == n.min() and stats["tokens_per_doc_max"] == n.max()
    assert stats["tokens_per_doc_median"] == float(np.median(n))
    assert 1.0 < stats["bytes_per_token"] < 8.0
    table_md = tokenization.token_stats_markdown(stats)
    assert "| documents | 70 |" in table_md and f"| total tokens | {stats['total_tokens']:,} |" in table_md

    # New input text retrains the vocabulary, and a changed vocabulary redoes the token shards,
    # even through a stage object built before (worker processes keep their stages).
    old_hash = stage.config_hash()
    _write_docs(fs, pii_dir, "part-00002", _docs_table(["Zebras zigzag zealously. " * 20] * 5, start=200))
    assert tokenization.prepare_tokenizer(cfg, fs, run_dir)["trained"] is True
    assert stage.config_hash() != old_hash
    assert run_shard(stage, fs, pii_dir, tok_dir, "part-00000")["skipped"] is False
    assert shards.load_manifest(fs, tok_dir, "part-00000")["tokenizer"]["ranks_sha256"] != first["ranks_sha256"]


def test_stage_uses_a_saved_tokenizer_folder_and_can_shuffle(tmp_path, trained):
    path, enc = trained
    texts = _corpus(25, seed=7)
    table = _docs_table(texts)
    plain = tokenization.TokenizeStage(_run_cfg(tmp_path, source="dir", tokenizer_dir=path)).process(table).kept
    assert plain.column("id").to_pylist() == table.column("id").to_pylist()
    shuffled_cfg = _run_cfg(tmp_path, source="dir", tokenizer_dir=path, shuffle_seed=5)
    a = tokenization.TokenizeStage(shuffled_cfg).process(table).kept
    b = tokenization.TokenizeStage(shuffled_cfg).process(table).kept
    assert a.equals(b)  # seeded: the same order every run
    assert a.column("id").to_pylist() != plain.column("id").to_pylist()
    assert sorted(a.to_pylist(), key=lambda r: r["id"]) == sorted(plain.to_pylist(), key=lambda r: r["id"])


def test_train_source_before_prepare_is_a_clear_error(tmp_path):
    stage = tokenization.TokenizeStage(_run_cfg(tmp_path, source="train"))
    with pytest.raises(ValueError, match="not trained yet"):
        stage.process(_docs_table(["hello"]))


def test_dir_source_requires_a_folder():
    from pipeline_lib.config import ConfigError

    with pytest.raises(ConfigError, match="tokenizer_dir"):
        parse_config({"tokenize": {"source": "dir"}})


# ---------------------------------------------------------------- CLI

def _cli(capsys, *argv) -> tuple[int, str]:
    from crawl2model.cli import main

    rc = main(list(argv))
    return rc, capsys.readouterr().out


def test_cli_tokens_json_done_check(tiktoken_cache, capsys):
    rc, out = _cli(capsys, "tokens", "I love machine learning!", "--encoding", "cl100k_base", "--json")
    assert rc == 0
    data = json.loads(out)
    assert data == {"encoding": "cl100k_base", "n_vocab": 100277, "ids": [40, 3021, 5780, 6975, 0],
                    "pieces": ["I", " love", " machine", " learning", "!"]}


def test_cli_train_tokenizer_then_tokens_and_compare(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(_corpus(200, seed=9)), encoding="utf-8")
    out = tmp_path / "tok"
    rc, text = _cli(capsys, "train-tokenizer", "--input", str(corpus), "--vocab-size", "300", "--out", str(out), "--json")
    assert rc == 0 and json.loads(text)["n_vocab"] == 300
    rc, text = _cli(capsys, "tokens", "the lazy fox, naïve 😀", "--tokenizer", str(out), "--json")
    data = json.loads(text)
    assert rc == 0 and data["encoding"] == "tok" and data["n_vocab"] == 300
    assert "".join(data["pieces"]).startswith("the lazy fox") and len(data["ids"]) == len(data["pieces"])
    rc, text = _cli(capsys, "tokens", "the lazy fox", "--compare", str(out), str(out))
    assert rc == 0 and "tokens  n_vocab 300" in text and "\x1b[" not in text  # not a tty: no colour


def test_trained_vocabulary_follows_the_tokens_input_when_pii_is_off(tmp_path):
    cfg = parse_config({"run": {"data_root": str(tmp_path), "name": "t", "partition": "p"},
                        "pii": {"enabled": False}, "tokenize": {"source": "train", "train": {"vocab_size": 300}}})
    fs = shards.filesystem(cfg.run_dir)
    dedup_dir = shards.join(cfg.run_dir, STAGE_DIRS["dedup"])
    _write_docs(fs, dedup_dir, "part-00000", _docs_table(_corpus(20)))
    summary = tokenization.prepare_tokenizer(cfg, fs, cfg.run_dir)
    assert summary["trained"] and summary["n_vocab"] == 300
    meta = bpe_train.read_meta(fs, tokenization.trained_dir(cfg.run_dir))
    assert meta["trained_on"]["stage"] == STAGE_DIRS["dedup"] and meta["trained_on"]["shards"] == 1


def test_relative_tokenizer_folder_on_the_command_line(tmp_path, trained, capsys, monkeypatch):
    path, _ = trained
    monkeypatch.chdir(os.path.dirname(path))
    rc, text = _cli(capsys, "tokens", "fox", "--tokenizer", os.path.basename(path), "--json")
    assert rc == 0 and json.loads(text)["encoding"] == "small-bpe"
