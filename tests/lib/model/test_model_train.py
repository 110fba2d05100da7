"""train(): learning, exact resume, idempotent reruns, gradient accumulation, data parallelism."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow.parquet as pq
import torch
import pytest
import yaml

from pipeline_lib import shards
from pipeline_lib.model.train import train
from tests.e2e.support import REPO


HANG_TIMEOUT_S = 900  # for a training process that hangs: far beyond any healthy run, however loaded the machine


class Interrupted(Exception):
    """Stands in for a kill: raised from the progress callback in the middle of a run."""


def _run(cfg, run_dir, progress=None):
    fs = shards.filesystem(str(run_dir))
    return train(cfg, fs, str(run_dir / "07_tokens"), str(run_dir / "08_train"), progress=progress)


def _metrics(run_dir):
    return pq.read_table(run_dir / "08_train" / "metrics.parquet").to_pylist()


def test_loss_falls_below_the_unigram_entropy_on_shakespeare_bytes(byte_run, make_config):
    cfg = make_config(max_steps=400, learning_rate=1e-2, warmup_steps=10, eval_interval=100, checkpoint_interval=400)
    result = _run(cfg, byte_run)
    rows = _metrics(byte_run)
    assert [r["step"] for r in rows] == list(range(1, 401))
    assert set(rows[0]) >= {"step", "loss", "val_loss", "lr", "tokens_per_s", "mfu"}
    assert rows[0]["loss"] == pytest.approx(math.log(320), abs=0.2)  # uniform over the padded byte vocab
    # The bytes' own frequencies give 3.30 nats; going below needs the context.
    assert result["val_loss"] < 3.1 and result["final_loss"] < 3.2
    assert [r["step"] for r in rows if r["val_loss"] is not None] == [100, 200, 300, 400]
    assert all(r["tokens_per_s"] > 0 for r in rows) and all(r["mfu"] is None for r in rows)  # no CPU peak given
    assert result["tokens_seen"] == 400 * 8 * 32 and result["steps"] == 400 and not result["skipped"]
    assert (byte_run / "08_train" / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.path.exists(result["checkpoint"])


def test_loss_falls_well_below_its_start_with_gpt2_tokens(tmp_path, tiktoken_cache, make_config, shard_writer, shakespeare):
    import tiktoken

    enc = tiktoken.get_encoding("gpt2")
    docs = shakespeare(enc.encode_ordinary, enc.eot_token)
    shard_writer(str(tmp_path / "run" / "07_tokens"), docs, {"encoding": "gpt2", "source": "pretrained"}, docs_per_shard=2000)
    cfg = make_config(max_steps=40, batch_size=4, block_size=32, learning_rate=1e-2, warmup_steps=5, eval_interval=40)
    result = _run(cfg, tmp_path / "run")
    first = _metrics(tmp_path / "run")[0]["loss"]
    assert first == pytest.approx(math.log(50304), abs=0.3)
    assert result["val_loss"] < first - 3.0


def test_resumed_run_reproduces_the_uninterrupted_losses(byte_run, tmp_path, make_config, shard_writer):
    cfg = make_config(max_steps=20, checkpoint_interval=5, eval_interval=4, dropout=0.1)
    straight = _run(cfg, byte_run)
    expected = _metrics(byte_run)

    other = tmp_path / "other"
    shutil.copytree(byte_run / "07_tokens", other / "07_tokens")

    def kill_at_step_13(row):
        if row["step"] == 13:
            raise Interrupted

    with pytest.raises(Interrupted):
        _run(cfg, other, progress=kill_at_step_13)
    assert not (other / "08_train" / "done.json").exists()
    resumed = _run(cfg, other)
    assert resumed["resumed_from"] == 10  # the last checkpoint before the kill
    got = _metrics(other)
    assert [r["step"] for r in got] == list(range(1, 21))
    for a, b in zip(got, expected):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6, abs=1e-6), a["step"]
        assert (a["val_loss"] is None) == (b["val_loss"] is None)
        if a["val_loss"] is not None:
            assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-6)
    assert resumed["final_loss"] == pytest.approx(straight["final_loss"], rel=1e-6)


def test_a_finished_run_is_skipped_and_no_file_changes(byte_run, make_config):
    cfg = make_config(max_steps=6, eval_interval=3)
    first = _run(cfg, byte_run)
    out = byte_run / "08_train"
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir()}
    again = _run(cfg, byte_run)
    assert again["skipped"] and again["final_loss"] == first["final_loss"]
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir()} == before
    # A knob that changes the training is a new run, not a skip.
    changed = _run(make_config(max_steps=7, eval_interval=3), byte_run)
    assert not changed["skipped"] and changed["steps"] == 7 and changed["resumed_from"] is None


def test_knobs_of_where_and_how_it_runs_neither_restart_nor_redo_training(byte_run, make_config):
    cfg = make_config(max_steps=8, checkpoint_interval=2, eval_interval=4, device="auto")

    def kill_at_step_5(row):
        if row["step"] == 5:
            raise Interrupted

    with pytest.raises(Interrupted):
        _run(cfg, byte_run, progress=kill_at_step_5)
    # Resumed on another device setting, with MFU's peak and the evaluation cadence changed: it
    # continues from its checkpoint (before, any of these restarted it from step 0).
    moved = make_config(max_steps=8, checkpoint_interval=2, eval_interval=3, eval_batches=2, device="cpu",
                        peak_flops=1e12)
    resumed = _run(moved, byte_run)
    assert resumed["resumed_from"] == 4 and resumed["steps"] == 8
    again = _run(make_config(max_steps=8, checkpoint_interval=2, eval_interval=4, device="cpu", compile=False), byte_run)
    assert again["skipped"]


def test_a_final_checkpoint_without_its_done_marker_finishes_without_retraining(byte_run, make_config):
    cfg = make_config(max_steps=6, eval_interval=3)
    first = _run(cfg, byte_run)
    (byte_run / "08_train" / "done.json").unlink()
    again = _run(cfg, byte_run)
    assert again["resumed_from"] == 6 and again["final_loss"] == first["final_loss"]
    assert (byte_run / "08_train" / "done.json").exists()


def test_a_killed_run_of_another_config_leaves_no_done_marker_that_vouches_for_its_checkpoint(byte_run, make_config):
    first = _run(make_config(max_steps=6, eval_interval=3), byte_run)

    class Killed(Exception):
        pass

    def kill_at_step_4(row):
        if row["step"] == 4:
            raise Killed

    with pytest.raises(Killed):  # another config starts, checkpoints at step 2 over ckpt.pt, dies
        _run(make_config(max_steps=9, eval_interval=3, checkpoint_interval=2), byte_run, progress=kill_at_step_4)
    again = _run(make_config(max_steps=6, eval_interval=3), byte_run)
    assert not again["skipped"] and again["steps"] == 6 and again["final_loss"] == first["final_loss"]
    ckpt = torch.load(byte_run / "08_train" / "ckpt.pt", map_location="cpu", weights_only=False)
    assert ckpt["step"] == 6 and ckpt["fingerprint"] == json.loads((byte_run / "08_train" / "done.json").read_text())["fingerprint"]


def test_gradient_accumulation_matches_one_large_batch(byte_run, tmp_path, make_config):
    big = _run(make_config(max_steps=5, batch_size=8, grad_accum_steps=1, eval_interval=5), byte_run)
    big_rows = _metrics(byte_run)
    # Same out dir: batch size and accumulation are in the fingerprint, so this is a new run from
    # step 0 (neither a skip on the first run's done.json nor a resume from its checkpoint).
    accumulated = _run(make_config(max_steps=5, batch_size=4, grad_accum_steps=2, eval_interval=5), byte_run)
    rows = _metrics(byte_run)
    assert not accumulated["skipped"] and accumulated["resumed_from"] is None and accumulated["steps"] == 5
    assert [r["step"] for r in rows] == [r["step"] for r in big_rows] == [1, 2, 3, 4, 5]
    assert accumulated["tokens_seen"] == big["tokens_seen"] == 5 * 8 * 32
    assert [r["tokens_seen"] for r in rows] == [r["tokens_seen"] for r in big_rows]
    for a, b in zip(rows, big_rows):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5), a["step"]


def test_too_little_data_for_one_window_is_a_clear_error(tmp_path, make_config, shard_writer):
    shard_writer(str(tmp_path / "run" / "07_tokens"), [[1, 2, 3, 256]], {"kind": "bytes"})
    with pytest.raises(ValueError, match="cannot fill one window"):
        _run(make_config(), tmp_path / "run")


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_with_the_global_batch(byte_run, tmp_path, make_config):
    """torchrun with two CPU ranks (gloo): each takes half of every global batch and gradients are
    averaged, so the losses equal a single process training on the whole batch."""
    single = make_config(max_steps=4, batch_size=8, eval_interval=2)
    _run(single, byte_run)
    expected = _metrics(byte_run)

    ddp_run = tmp_path / "ddp"
    shutil.copytree(byte_run / "07_tokens", ddp_run / "07_tokens")
    config = {"train": {**single.train.model_dump(mode="json"), "batch_size": 4}}
    (tmp_path / "ddp.yaml").write_text(yaml.safe_dump(config))
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "crawl2model.cli", "train",
                           "--run-dir", str(ddp_run), "--config", str(tmp_path / "ddp.yaml")],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = _metrics(ddp_run)
    assert [r["step"] for r in got] == [1, 2, 3, 4]
    for a, b in zip(got, expected):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
        assert a["tokens_seen"] == b["tokens_seen"]
    assert '"world_size": 2' in proc.stdout


def test_ddp_evaluation_with_fewer_held_out_windows_than_ranks(tmp_path, shard_writer):
    """One held-out window for two ranks: the rank without one skipped the all-reduce its peer was
    in, and training died (gloo: connection reset; NCCL would hang)."""
    import numpy as np

    rng = np.random.default_rng(0)
    docs = [[int(t) for t in rng.integers(0, 256, 19)] + [256] for _ in range(15)]  # 300 tokens
    shard_writer(str(tmp_path / "run" / "07_tokens"), docs, {"kind": "bytes"})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"train": {
        "preset": "tiny", "max_steps": 4, "batch_size": 2, "block_size": 16, "device": "cpu", "eval_interval": 2,
        "eval_batches": 2, "checkpoint_interval": 2, "val_fraction": 0.05}}))
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "crawl2model.cli", "train",
                           "--run-dir", str(tmp_path / "run"), "--config", str(tmp_path / "c.yaml")],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["val_loss"] is not None for r in _metrics(tmp_path / "run")] == [False, True, False, True]


def test_a_killed_ddp_run_with_dropout_resumes_exactly_and_only_on_as_many_ranks(byte_run, tmp_path):
    """Only rank 0's RNG was saved, so rank 1's dropout masks changed on resume and the losses left
    the uninterrupted run's; resuming on another process count silently halved the global batch."""
    config = {"train": {"preset": "tiny", "max_steps": 6, "batch_size": 2, "block_size": 16, "device": "cpu",
                        "dropout": 0.1, "eval_interval": 100, "checkpoint_interval": 2, "val_fraction": 0.0}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    torchrun = [os.path.join(os.path.dirname(sys.executable), "torchrun"), "--standalone", "--nproc_per_node", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def train_in(run: Path, launcher: list[str], stop_at: int = 0) -> subprocess.CompletedProcess:
        if not (run / "07_tokens").exists():
            shutil.copytree(byte_run / "07_tokens", run / "07_tokens")
        return subprocess.run([*launcher, "-m", "tests.lib.model.interrupt_train", "train", "--run-dir", str(run),
                               "--config", str(tmp_path / "c.yaml")], capture_output=True, text=True, timeout=300,
                              env={**env, "STOP_AT": str(stop_at)}, cwd=REPO)

    straight = train_in(tmp_path / "straight", torchrun)
    assert straight.returncode == 0, straight.stderr[-3000:]
    killed = train_in(tmp_path / "killed", torchrun, stop_at=5)  # dies asking for step 5's batch
    assert killed.returncode != 0 and not (tmp_path / "killed" / "08_train" / "done.json").exists()
    one = train_in(tmp_path / "killed", [sys.executable])
    assert one.returncode != 0 and "was written by 2 training processes and this run has 1" in one.stderr
    resumed = train_in(tmp_path / "killed", torchrun)
    if resumed.returncode != 0 and "terminate called without an active exception" in resumed.stderr:
        # Seen once in CI under load: rank 1 aborted in gloo's teardown after the last step (not
        # reproduced in 8 local runs, loaded or idle). A second launch finishes or skips the run;
        # the losses below are what this test checks.
        resumed = train_in(tmp_path / "killed", torchrun)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
    else:
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert '"resumed_from": 4' in resumed.stdout
    assert [r["loss"] for r in _metrics(tmp_path / "killed")] == [r["loss"] for r in _metrics(tmp_path / "straight")]


def test_validation_loss_weighs_every_window_the_same(byte_run, make_config):
    import numpy as np

    from pipeline_lib.model import data
    from pipeline_lib.model.gpt import GPT
    from pipeline_lib.model.train import _Distributed, _evaluate, preset

    torch.manual_seed(0)
    model = GPT(preset("tiny", 257, 16, 0.0))
    tokens = np.random.default_rng(1).integers(0, 257, 5 * 16 + 1).astype(np.uint16)
    batches = data.validation_batches(tokens, 16, 4, n_batches=2)
    assert [len(b) for b in batches] == [4, 1]
    x, y = data.to_device(np.concatenate(batches), torch.device("cpu"))
    with torch.no_grad():
        every_window = float(model(x, y)[1])
    got = _evaluate(model, batches, make_config().train, torch.device("cpu"), _Distributed("cpu"))
    assert got == pytest.approx(every_window, rel=1e-5)  # the mean of batch means counted the 5th window 4 times


def test_token_ids_outside_the_recorded_vocabulary_are_refused(tmp_path, make_config, shard_writer):
    shard_writer(str(tmp_path / "run" / "07_tokens"), [list(range(250, 300)) * 3], {"kind": "bytes"})
    with pytest.raises(ValueError, match="outside the tokenizer's vocabulary of 257"):
        _run(make_config(), tmp_path / "run")


def test_bf16_autocast_path_trains(byte_run, make_config):
    # The CUDA default; on CPU it is opt-in, and exercises the same autocast code.
    result = _run(make_config(max_steps=4, dtype="bfloat16", eval_interval=2), byte_run)
    rows = _metrics(byte_run)
    assert result["steps"] == 4 and all(math.isfinite(r["loss"]) for r in rows)
    assert rows[-1]["val_loss"] is not None and math.isfinite(rows[-1]["val_loss"])


def test_any_fsspec_filesystem_works(make_config, shard_writer, tmp_path):
    """The same code on an object-store-like filesystem (fsspec's in-memory one: no rename)."""
    import fsspec

    local = tmp_path / "run"
    shard_writer(str(local / "07_tokens"), [list(range(256)) * 4, list(range(100)) * 3], {"kind": "bytes"})
    fs = fsspec.filesystem("memory")
    fs.put(str(local / "07_tokens"), "/mem-run/07_tokens", recursive=True)
    cfg = make_config(max_steps=3, eval_interval=3, val_fraction=0.0)
    result = train(cfg, fs, "memory://mem-run/07_tokens", "memory://mem-run/08_train")
    assert result["steps"] == 3 and result["val_loss"] is None
    assert {p.rsplit("/", 1)[-1] for p in fs.ls("/mem-run/08_train", detail=False)} >= {"ckpt.pt", "metrics.parquet", "loss.png", "done.json"}
    assert train(cfg, fs, "memory://mem-run/07_tokens", "memory://mem-run/08_train")["skipped"]


@pytest.mark.slow
def test_a_killed_training_process_resumes_to_the_same_losses(byte_run, tmp_path, make_config):
    """SIGKILL a real `crawl2model train` after its first checkpoints, rerun it, and compare every
    step's loss with an uninterrupted run."""
    import signal

    cfg = make_config(max_steps=150, checkpoint_interval=15, eval_interval=50)
    straight = tmp_path / "straight"
    shutil.copytree(byte_run / "07_tokens", straight / "07_tokens")
    _run(cfg, straight)
    expected = _metrics(straight)

    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"train": cfg.train.model_dump(mode="json")}))
    command = [sys.executable, "-m", "crawl2model.cli", "train", "--run-dir", str(byte_run), "--config", str(tmp_path / "c.yaml")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    ckpt = byte_run / "08_train" / "ckpt.pt"
    # No deadline on the training's speed: we wait for the kill point or the process's own exit.
    # Only a run that hangs outright meets this watchdog, and then the test says so.
    hung = threading.Event()

    def give_up():
        hung.set()
        proc.kill()

    watchdog = threading.Timer(HANG_TIMEOUT_S, give_up)
    watchdog.start()
    killed = False
    seen: list[str] = []
    try:
        for line in proc.stderr:  # progress lines: "step N/150 ..."; ends when the process exits
            seen.append(line)
            if ckpt.exists() and line.startswith("step") and int(line.split()[1].split("/")[0]) >= 40:
                proc.send_signal(signal.SIGKILL)
                killed = proc.returncode is None  # send_signal does nothing once the process has exited
                break
    finally:
        watchdog.cancel()
    proc.wait()
    tail = "".join(seen[-15:])
    if hung.is_set():
        pytest.fail(f"crawl2model train showed no step >= 40 with a checkpoint in {HANG_TIMEOUT_S} s; stderr tail:\n{tail}")
    if not killed:
        pytest.fail(f"crawl2model train exited with {proc.returncode} before it could be killed after step 40 "
                    f"with a checkpoint on disk; stderr tail:\n{tail}{proc.stderr.read()[-2000:]}")
    assert proc.returncode == -signal.SIGKILL
    assert not (byte_run / "08_train" / "done.json").exists()

    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=HANG_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-2000:]
    import json

    result = json.loads(done.stdout)
    assert result["resumed_from"] and 15 <= result["resumed_from"] < 150 and result["resumed_from"] % 15 == 0
    got = _metrics(byte_run)
    assert [r["step"] for r in got] == list(range(1, 151))
    for a, b in zip(got, expected):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6, abs=1e-6), a["step"]
    assert not list((byte_run / "08_train").glob(".tmp-*"))


def test_a_diverging_run_stops_and_keeps_its_last_checkpoint(byte_run, make_config):
    cfg = make_config(max_steps=12, learning_rate=1e6, warmup_steps=0, grad_clip=0.0, checkpoint_interval=1)
    with pytest.raises(FloatingPointError, match="training loss is|gradient norm is"):
        _run(cfg, byte_run)
    from pipeline_lib.model.sample import load_checkpoint

    model, _, ckpt = load_checkpoint(str(byte_run / "08_train" / "ckpt.pt"), device="cpu")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert not (byte_run / "08_train" / "done.json").exists()
