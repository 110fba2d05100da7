"""The playground: seeded sampling, next-token distributions, and the CLI commands."""

from __future__ import annotations

import json

import pytest
import torch

from crawl2model.cli import main
from pipeline_lib import shards
from pipeline_lib.model.sample import (ByteTokenizer, generate, generate_text, load_checkpoint,
                                       next_token_distribution, top_next_tokens)
from pipeline_lib.model.train import train


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, shakespeare, make_config, shard_writer):
    """A tiny model trained briefly on Shakespeare bytes (shared by this module's tests)."""
    torch.set_num_threads(1)
    run_dir = tmp_path_factory.mktemp("sample") / "run"
    docs = shakespeare(lambda s: list(s.encode()), 256, max_chars=100_000)
    shard_writer(str(run_dir / "07_tokens"), docs, {"kind": "bytes"})
    cfg = make_config(max_steps=60, learning_rate=1e-2, eval_interval=60)
    result = train(cfg, shards.filesystem(str(run_dir)), str(run_dir / "07_tokens"), str(run_dir / "08_train"))
    return run_dir, result["checkpoint"]


def test_checkpoint_rebuilds_its_model_and_tokenizer(checkpoint):
    _, path = checkpoint
    model, tokenizer, ckpt = load_checkpoint(path, device="cpu")
    assert isinstance(tokenizer, ByteTokenizer)
    assert ckpt["step"] == 60 and ckpt["model_config"]["vocab_size"] == 257
    assert not model.training


def test_same_seed_same_text_and_different_seeds_differ(checkpoint):
    model, tokenizer, _ = load_checkpoint(checkpoint[1], device="cpu")
    a = generate_text(model, tokenizer, "ROMEO:", max_new_tokens=40, seed=7)
    b = generate_text(model, tokenizer, "ROMEO:", max_new_tokens=40, seed=7)
    others = {generate_text(model, tokenizer, "ROMEO:", max_new_tokens=40, seed=s) for s in range(8, 12)}
    assert a == b and len(a.encode()) <= 40
    assert len(others - {a}) >= 3


def test_greedy_decoding_follows_the_argmax(checkpoint):
    model, tokenizer, _ = load_checkpoint(checkpoint[1], device="cpu")
    prompt = tokenizer.encode("First Citizen:")
    ids = generate(model, prompt, max_new_tokens=5, temperature=0)
    probs = next_token_distribution(model, tokenizer, "First Citizen:")
    assert ids[0] == int(probs.argmax())


def test_sampling_never_emits_a_padding_token_and_top_k_limits_the_choice(checkpoint):
    model, tokenizer, _ = load_checkpoint(checkpoint[1], device="cpu")
    ids = generate(model, tokenizer.encode("A"), max_new_tokens=200, temperature=5.0, seed=1)
    assert all(0 <= i < 257 for i in ids)
    top3 = {r.id for r in top_next_tokens(model, tokenizer, "A", k=3)}
    ids = generate(model, tokenizer.encode("A"), max_new_tokens=1, temperature=5.0, top_k=3, seed=2)
    assert ids[0] in top3


def test_next_token_probabilities_are_a_distribution(checkpoint):
    model, tokenizer, _ = load_checkpoint(checkpoint[1], device="cpu")
    probs = next_token_distribution(model, tokenizer, "I hope you")
    assert probs.shape == (257,)
    assert (probs >= 0).all() and float(probs.sum()) == pytest.approx(1.0, abs=1e-5)
    top = top_next_tokens(model, tokenizer, "I hope you", k=10)
    assert [r.prob for r in top] == sorted((r.prob for r in top), reverse=True)
    assert top[0].prob == pytest.approx(float(probs.max()))


def test_next_token_command_prints_a_table_and_json(checkpoint, capsys):
    run_dir, path = checkpoint
    assert main(["next-token", path, "I hope you", "--top-k", "5", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 5 and set(rows[0]) == {"token", "id", "prob"}
    assert sum(r["prob"] for r in rows) <= 1.0 + 1e-6
    assert main(["next-token", str(run_dir), "I hope you"]) == 0  # a run dir finds 08_train/ckpt.pt
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["rank", "prob", "id", "token"] and len(table) == 11


def test_sample_command_is_reproducible_with_a_seed(checkpoint, capsys):
    _, path = checkpoint
    args = ["sample", path, "KING:", "--max-new-tokens", "30", "--seed", "3", "--temperature", "0.9", "--top-k", "20"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first and first.startswith("KING:")


def test_missing_checkpoint_is_a_one_line_error(tmp_path, capsys):
    assert main(["sample", str(tmp_path), "x"]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_train_command_trains_on_a_run_dirs_token_shards(byte_run, tmp_path, capsys, monkeypatch):
    config = tmp_path / "c.yaml"
    # The crawl's input files are not on a GPU machine: training does not need them.
    config.write_text("train:\n  preset: tiny\n  max_steps: 3\n  block_size: 32\n  batch_size: 4\n  device: cpu\n"
                      "urlfilter:\n  blocklist_files: [/only/on/the/cpu/box.txt]\n")
    monkeypatch.chdir(byte_run.parent)  # a relative run dir, as typed at a shell
    assert main(["train", "--run-dir", byte_run.name, "--config", str(config)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["steps"] == 3 and (byte_run / "08_train" / "ckpt.pt").is_file()
    # done.json names the checkpoint by its absolute path, as a pipeline run does (it was relative)
    assert result["checkpoint"] == json.loads((byte_run / "08_train" / "done.json").read_text())["result"]["checkpoint"] == str(
        byte_run / "08_train" / "ckpt.pt")
    assert main(["train", "--run-dir", str(byte_run), "--config", str(config)]) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] is True


def test_an_empty_prompt_starts_from_end_of_text(checkpoint):
    model, tokenizer, _ = load_checkpoint(checkpoint[1], device="cpu")
    assert generate_text(model, tokenizer, "", max_new_tokens=10, seed=1) == generate_text(
        model, tokenizer, "", max_new_tokens=10, seed=1)
    assert float(next_token_distribution(model, tokenizer, "").sum()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("args, message", [
    (["sample", "CKPT", "x", "--top-k", "-1"], "--top-k: must be at least 0"),
    (["sample", "CKPT", "x", "--temperature", "-0.5"], "--temperature: must be at least 0"),
    (["sample", "CKPT", "x", "--max-new-tokens", "-3"], "--max-new-tokens: must be at least 0"),
    (["next-token", "CKPT", "x", "--top-k", "0"], "--top-k: must be at least 1"),
    (["sample", "CKPT", "x", "--temperature", "nan"], "--temperature: must be at least 0"),
    (["sample", "CKPT", "x", "--temperature", "inf"], "--temperature: must be a finite number"),
    (["train", "--run-dir", "RUN", "--max-steps", "0"], "--max-steps: must be at least 1"),
])
def test_impossible_sampling_and_training_arguments_are_usage_errors(checkpoint, args, message, capsys):
    # Before, --top-k -1 reached torch.topk and printed a traceback.
    _, path = checkpoint
    args = [path if a in ("CKPT", "RUN") else a for a in args]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_device_this_machine_lacks_is_named_not_blamed_on_the_checkpoint(checkpoint, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["sample", checkpoint[1], "x", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "torch sees no CUDA GPU here" in err and "not a crawl2model checkpoint" not in err


def test_a_tiny_temperature_is_greedy_not_a_nan_error(checkpoint):
    model, tokenizer, _ = load_checkpoint(checkpoint[1], device="cpu")
    prompt = tokenizer.encode("First Citizen:")
    greedy = generate(model, prompt, max_new_tokens=8, temperature=0)
    assert generate(model, prompt, max_new_tokens=8, temperature=1e-45, seed=3) == greedy


def test_ids_that_are_no_token_are_never_sampled_nor_listed(checkpoint):
    model, tokenizer, _ = load_checkpoint(checkpoint[1], device="cpu")
    banned = list(range(97, 123))  # stand-ins for cl100k_base's holes: every lower-case letter
    ids = generate(model, tokenizer.encode("ROMEO:"), max_new_tokens=300, temperature=50.0, seed=4, banned=banned)
    assert len(ids) == 300 and not set(ids) & set(banned)


def test_tiktoken_vocabularies_with_holes_have_them_masked():
    import os

    from pipeline_lib.model.sample import non_token_ids
    from pipeline_lib.tokenization import load_pretrained

    if not os.path.isdir(os.environ.get("TIKTOKEN_CACHE_DIR", "")):
        pytest.skip("no tiktoken cache (../shared/data/tiktoken-cache)")
    assert non_token_ids(load_pretrained("cl100k_base")) == [100256, *range(100261, 100276)]
    assert non_token_ids(load_pretrained("gpt2")) == [] and non_token_ids(ByteTokenizer()) == []


def test_end_of_text_in_a_prompt_is_the_special_token_for_byte_checkpoints():
    from pipeline_lib.model.sample import encode_prompt

    tok = ByteTokenizer()
    assert encode_prompt(tok, "a<|endoftext|>b") == [97, 256, 98]  # was its 13 bytes
    assert tok.encode("a<|endoftext|>") == list(b"a<|endoftext|>")  # plain encode: text, as in the tokens stage
    assert tok.decode(encode_prompt(tok, "x<|endoftext|>")) == "x"


def test_a_cl100k_checkpoint_never_samples_nor_lists_its_non_token_ids(tmp_path, shard_writer, make_config, capsys):
    """cl100k_base has 16 ids that are no token: next-token --top-k over the whole vocabulary and
    hot sampling ended in "KeyError: Invalid token for decoding"."""
    import os

    if not os.path.isdir(os.environ.get("TIKTOKEN_CACHE_DIR", "")):
        pytest.skip("no tiktoken cache (../shared/data/tiktoken-cache)")
    from pipeline_lib.tokenization import load_pretrained

    enc = load_pretrained("cl100k_base")
    docs = [enc.encode_ordinary(f"line {i}: to be or not to be") + [enc.eot_token] for i in range(60)]
    run = tmp_path / "run"
    shard_writer(str(run / "07_tokens"), docs, {"encoding": "cl100k_base", "source": "pretrained"})
    ckpt = train(make_config(max_steps=2, block_size=16, batch_size=2), shards.filesystem(str(run)),
                 str(run / "07_tokens"), str(run / "08_train"))["checkpoint"]
    holes = {100256, *range(100261, 100276)}
    assert main(["next-token", ckpt, "To be", "--top-k", "100277", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 100277 - 16 and not holes & {r["id"] for r in rows}
    assert main(["sample", ckpt, "To be", "--temperature", "50", "--top-k", "0", "--max-new-tokens", "300",
                 "--seed", "68"]) == 0
