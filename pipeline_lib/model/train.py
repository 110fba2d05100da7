"""Pretraining loop: token shards in, checkpoints and metrics out.

    train(cfg, fs, "<run>/07_tokens", "<run>/08_train")          # one process, CPU or one GPU
    torchrun --nproc_per_node 8 -m crawl2model.cli train --run-dir <run>   # DDP, one node
    torchrun --nnodes 2 --node_rank R --master_addr H --nproc_per_node 8 -m crawl2model.cli train ...

AdamW (decay on matrices only), linear warmup then cosine decay, gradient accumulation and
clipping, bf16 autocast on CUDA, optional ``torch.compile``, DDP when launched by torchrun (each
rank reads its own windows; only rank 0 writes). Output in ``out_dir``:

    ckpt.pt          latest checkpoint: model, optimizer, step, RNG state, data position, config,
                     tokenizer, metrics so far; a killed run resumes from it exactly
    metrics.parquet  one row per step: step, loss, val_loss, lr, tokens_per_s, mfu, ...
    loss.png         the loss curve (for the Prefect artifact)
    done.json        written last: the fingerprint (config + inputs) and the result; a rerun with
                     the same fingerprint returns at once and touches nothing
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import time
from typing import Any, Callable

import pyarrow as pa
import torch
import torch.distributed as dist

from pipeline_lib import shards
from pipeline_lib.config import PipelineConfig, TrainConfig
from pipeline_lib.model import data as token_data
from pipeline_lib.model.gpt import GPT, preset
from pipeline_lib.model.sample import read_checkpoint, tokenizer_from_spec
from pipeline_lib.model.tokenizer_spec import resolve_tokenizer_spec
from pipeline_lib.schema import TRAIN_DONE_FILE

CKPT_FILE = "ckpt.pt"
METRICS_FILE = "metrics.parquet"
LOSS_PLOT_FILE = "loss.png"
CHECKPOINT_FORMAT = "crawl2model-gpt/1"

# Dense bf16 peak FLOP/s per device, for MFU when train.peak_flops is not set.
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12,
                   "A10G": 70e12, "A10": 125e12, "4090": 165e12, "3090": 71e12}

# Knobs that do not change what is trained (where and how fast it runs, what is measured on the
# way): changing them neither restarts nor redoes a run; a killed run resumes on a GPU under
# device: cuda. (Data order and dropout are seeded per step, so evaluation does not shift them.)
_NOT_FINGERPRINTED = {"enabled", "checkpoint_interval", "deployment", "device", "compile", "peak_flops",
                      "eval_interval", "eval_batches"}

METRICS_SCHEMA = pa.schema([
    ("step", pa.int64()), ("loss", pa.float64()), ("val_loss", pa.float64()), ("lr", pa.float64()),
    ("tokens_per_s", pa.float64()), ("mfu", pa.float64()), ("tokens_seen", pa.int64()),
    ("grad_norm", pa.float64()), ("elapsed_s", pa.float64()),
])


def lr_at(step: int, tc: TrainConfig) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warmup, then cosine to min."""
    if step < tc.warmup_steps:
        return tc.learning_rate * (step + 1) / tc.warmup_steps
    decay_steps = tc.max_steps - tc.warmup_steps
    if decay_steps <= 0:
        return tc.learning_rate
    progress = min(1.0, (step - tc.warmup_steps) / decay_steps)
    min_lr = tc.learning_rate * tc.min_lr_ratio
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (tc.learning_rate - min_lr)


def peak_flops(tc: TrainConfig, device: torch.device) -> float | None:
    if tc.peak_flops:
        return tc.peak_flops
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, flops in PEAK_BF16_FLOPS.items():
        if key in name:
            return flops
    return None


def resolve_device(name: str, local_rank: int, cuda_available: bool) -> torch.device:
    """The device of this process, always with an index on CUDA (set_device, DDP and the RNG calls
    need one): each torchrun process takes the GPU of its LOCAL_RANK."""
    if name == "auto":
        name = "cuda" if cuda_available else "cpu"
    if name.startswith("cuda") and not cuda_available:  # before: a torch traceback and an abort (rc 134)
        raise ValueError(f"device {name!r}: torch sees no CUDA GPU here; use 'cpu' or 'auto'")
    if name == "cuda":
        name = f"cuda:{local_rank}"
    return torch.device(name)


class _Distributed:
    """torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK), or a single process."""

    def __init__(self, device_name: str):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.owns_group = False
        self.device = resolve_device(device_name, self.local_rank, torch.cuda.is_available())
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if self.world_size > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
            self.owns_group = True

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def mean(self, value: float) -> float:
        if self.world_size == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)  # SUM: gloo has no AVG
        return float(t) / self.world_size

    def gather(self, obj: Any) -> list[Any]:
        """``obj`` of every rank, in rank order (every rank must call this)."""
        if self.world_size == 1:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def sums(self, *values: float) -> list[float]:
        """Each value summed over the ranks (every rank must call this, with the same count)."""
        if self.world_size == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def close(self, wait_for_peers: bool) -> None:
        if self.owns_group and wait_for_peers:
            # Tearing down while a peer is still writing (rank 0's checkpoint, plot) aborts gloo.
            dist.barrier()
            dist.destroy_process_group()


def fingerprint(tc: TrainConfig, model_config: dict, inputs: list[dict], tokenizer: dict) -> str:
    knobs = {k: v for k, v in tc.model_dump(mode="json").items() if k not in _NOT_FINGERPRINTED}
    blob = json.dumps({"train": knobs, "model": model_config, "inputs": inputs,
                       "tokenizer": {k: v for k, v in tokenizer.items() if k != "ranks"},
                       "tokenizer_ranks": hashlib.sha256(tokenizer.get("ranks", "").encode()).hexdigest()},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _save_torch(fs, path: str, obj: Any) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    shards.write_bytes_atomic(fs, path, buffer.getvalue())


def _write_metrics(fs, out_dir: str, history: list[dict]) -> None:
    table = pa.Table.from_pylist(history, schema=METRICS_SCHEMA)
    shards.write_bytes_atomic(fs, shards.join(out_dir, METRICS_FILE), shards.table_to_parquet_bytes(table))


def _write_loss_plot(fs, out_dir: str, history: list[dict], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot([r["step"] for r in history], [r["loss"] for r in history], label="train", linewidth=1)
    val = [(r["step"], r["val_loss"]) for r in history if r["val_loss"] is not None]
    if val:
        ax.plot(*zip(*val), "o-", label="validation", markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    shards.write_bytes_atomic(fs, shards.join(out_dir, LOSS_PLOT_FILE), buffer.getvalue())


def _autocast(tc: TrainConfig, device: torch.device):
    use_bf16 = tc.dtype == "bfloat16" or (tc.dtype == "auto" and device.type == "cuda")
    if not use_bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


@torch.no_grad()
def _evaluate(model, batches, tc: TrainConfig, device: torch.device, ddp: _Distributed) -> float | None:
    """Mean loss over every held-out window of every rank. Each window weighs the same (a short
    last batch counted as much as a full one), and every rank joins the reduction, even one with
    no window (it left its peer in an all-reduce of its own: a crash, or a hang on NCCL)."""
    model.eval()
    total, count = 0.0, 0
    for batch in batches:
        x, y = token_data.to_device(batch, device)
        with _autocast(tc, device):
            _, loss = model(x, y)
        total += float(loss) * len(batch)
        count += len(batch)
    model.train()
    total, count = ddp.sums(total, count)
    return total / count if count else None


def train(cfg: PipelineConfig, fs, token_dir: str, out_dir: str,
          progress: Callable[[dict], None] | None = None) -> dict:
    """Train (or resume, or skip) the model on the token shards of ``token_dir``; see the module doc."""
    tc = cfg.train
    started = time.perf_counter()
    _, inputs, tokenizer_info = token_data.describe_shards(fs, token_dir)
    run_dir = token_dir.rstrip("/").rsplit("/", 1)[0]
    tokenizer_spec = resolve_tokenizer_spec(cfg, fs, tokenizer_info, run_dir)
    vocab_size = int(tokenizer_from_spec(tokenizer_spec).n_vocab)
    model_config = preset(tc.preset, vocab_size, tc.block_size, tc.dropout)
    fp = fingerprint(tc, model_config.to_dict(), inputs, tokenizer_spec)
    ckpt_path = shards.join(out_dir, CKPT_FILE)
    done_path = shards.join(out_dir, TRAIN_DONE_FILE)

    done = shards.read_json_or_none(fs, done_path)
    if done and done.get("fingerprint") == fp and shards.exists(fs, ckpt_path):
        return {**done["result"], "skipped": True}

    stream = token_data.load_token_stream(fs, token_dir)
    if stream.inputs != inputs:
        raise shards.ShardError(f"{token_dir}: shards changed while training started; rerun")
    if stream.tokens.size and int(stream.tokens.max()) >= vocab_size:
        raise ValueError(f"{token_dir}: token id {int(stream.tokens.max())} is outside the tokenizer's "
                         f"vocabulary of {vocab_size}; the shards were made with another tokenizer")
    ddp = _Distributed(tc.device)
    try:
        result = _train_loop(cfg, fs, out_dir, progress, ddp, stream, tokenizer_spec, model_config, fp, started)
    except BaseException:
        ddp.close(wait_for_peers=False)  # the peers may be stuck in a collective; torchrun ends them
        raise
    ddp.close(wait_for_peers=True)
    return result


def _train_loop(cfg, fs, out_dir, progress, ddp: _Distributed, stream, tokenizer_spec, model_config, fp, started):
    tc = cfg.train
    device = ddp.device
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 leftovers (optimizer, norms) on tensor cores
        torch.backends.cudnn.allow_tf32 = True
    ckpt_path = shards.join(out_dir, CKPT_FILE)
    T, B = model_config.block_size, tc.batch_size
    if ddp.is_main:
        shards.remove_temp_files(fs, out_dir)  # half-written checkpoints of a killed run
        # This run's checkpoints replace ckpt.pt: a done.json of another run must not vouch for them
        # (were this run killed, a rerun of that other config would skip and report its result).
        shards.remove_if_exists(fs, shards.join(out_dir, TRAIN_DONE_FILE))

    torch.manual_seed(tc.seed)  # same initial weights on every rank
    model = GPT(model_config).to(device)
    optimizer = model.optimizer(tc.learning_rate, tc.weight_decay, (tc.beta1, tc.beta2), device.type)
    train_tokens, val_tokens = token_data.split_train_val(stream, tc.val_fraction, T + 1)
    sampler = token_data.WindowSampler(train_tokens, T, B, tc.seed, ddp.rank, ddp.world_size)
    val_batches = token_data.validation_batches(val_tokens, T, B, tc.eval_batches, ddp.rank, ddp.world_size)

    step, history, elapsed_before, resumed_from = 0, [], 0.0, None
    previous = read_checkpoint(fs, ckpt_path, map_location=device) if shards.exists(fs, ckpt_path) else None
    if previous is not None and previous.get("fingerprint") == fp and previous.get("step", 0) <= tc.max_steps:
        written_by = int(previous.get("world_size", ddp.world_size))
        if written_by != ddp.world_size:
            # Another process count is another global batch (batch_size is per process) and another
            # split of the data: the resumed steps would not continue this run.
            raise ValueError(f"{ckpt_path} was written by {written_by} training processes and this run has "
                             f"{ddp.world_size}: resume it with {written_by} (torchrun --nproc_per_node "
                             f"{written_by}), or remove the checkpoint to start over")
        model.load_state_dict(previous["model"])
        optimizer.load_state_dict(previous["optimizer"])
        sampler.load_state_dict(previous["data"])
        step = resumed_from = int(previous["step"])
        history = [dict(r) for r in previous["history"]]
        elapsed_before = float(previous.get("elapsed_s", 0.0))
        ranks = previous.get("rng_ranks")
        if ranks and len(ranks) == ddp.world_size:  # every rank's own RNG: dropout masks continue exactly
            _set_rng_state(ranks[ddp.rank], device)
        elif ddp.is_main:
            _set_rng_state(previous["rng"], device)
        else:  # a checkpoint with rank 0's RNG only: the others restart from a seeded, step-dependent point
            torch.manual_seed(tc.seed + 1000003 * ddp.rank + step)
    elif ddp.rank:
        torch.manual_seed(tc.seed + 1000003 * ddp.rank)  # different dropout masks per rank
    del previous

    raw_model = model
    if tc.compile:
        model = torch.compile(model)
    eval_model = model  # evaluation needs no gradient sync, so it bypasses the DDP wrapper
    if ddp.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    flops_per_token = raw_model.flops_per_token(T)
    peak = peak_flops(tc, device)
    tokens_per_step = B * T * tc.grad_accum_steps * ddp.world_size
    params = raw_model.num_params()

    def checkpoint(at_step: int, elapsed: float) -> None:
        rng_ranks = ddp.gather(_rng_state(device)) if ddp.world_size > 1 else None  # every rank takes part
        if not ddp.is_main:
            return
        _save_torch(fs, ckpt_path, {
            "format": CHECKPOINT_FORMAT, "fingerprint": fp, "step": at_step,
            "model_config": model_config.to_dict(), "model": raw_model.state_dict(),
            "optimizer": optimizer.state_dict(), "data": sampler.state_dict(), "rng": _rng_state(device),
            "train_config": tc.model_dump(mode="json"), "tokenizer": tokenizer_spec,
            "history": history, "elapsed_s": elapsed, "tokens_seen": at_step * tokens_per_step,
            "world_size": ddp.world_size, **({"rng_ranks": rng_ranks} if rng_ranks else {}),
        })
        _write_metrics(fs, out_dir, history)

    model.train()
    loop_started = time.perf_counter()
    while step < tc.max_steps:
        step_started = time.perf_counter()
        lr = lr_at(step, tc)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss_sum = torch.zeros((), device=device)
        for micro in range(tc.grad_accum_steps):
            x, y = token_data.to_device(sampler.next_batch(), device)
            last = micro == tc.grad_accum_steps - 1
            # DDP all-reduces gradients on every backward; only the last micro-batch needs it.
            sync = contextlib.nullcontext() if last or ddp.world_size == 1 else model.no_sync()
            with sync:
                with _autocast(tc, device):
                    _, loss = model(x, y)
                (loss / tc.grad_accum_steps).backward()
            loss_sum += loss.detach()
        grad_norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), tc.grad_clip if tc.grad_clip > 0 else float("inf"))
        if not torch.isfinite(grad_norm):  # the same on every rank: gradients are all-reduced
            # Stepping would write NaN weights over the last good checkpoint.
            raise FloatingPointError(f"gradient norm is {float(grad_norm)} at step {step + 1}; lower "
                                     f"train.learning_rate (the last checkpoint is kept)")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1

        train_loss = ddp.mean(float(loss_sum) / tc.grad_accum_steps)  # float() waits for the GPU
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"training loss is {train_loss} at step {step}; lower train.learning_rate "
                                     f"(the last checkpoint is kept)")
        seconds = time.perf_counter() - step_started
        tokens_per_s = tokens_per_step / seconds
        val_loss = _evaluate(eval_model, val_batches, tc, device, ddp) if step % tc.eval_interval == 0 or step == tc.max_steps else None
        elapsed = elapsed_before + time.perf_counter() - loop_started
        row = {
            "step": step, "loss": train_loss, "val_loss": val_loss, "lr": lr, "tokens_per_s": tokens_per_s,
            "mfu": flops_per_token * tokens_per_s / ddp.world_size / peak if peak else None,
            "tokens_seen": step * tokens_per_step, "grad_norm": float(grad_norm), "elapsed_s": elapsed,
        }
        history.append(row)
        if step % tc.checkpoint_interval == 0 or step == tc.max_steps:
            checkpoint(step, elapsed)
        if progress is not None and ddp.is_main:
            progress({**row, "max_steps": tc.max_steps})

    last = history[-1]
    last_val = next((r["val_loss"] for r in reversed(history) if r["val_loss"] is not None), None)
    result = {
        "steps": step, "final_loss": last["loss"], "val_loss": last_val, "tokens_seen": last["tokens_seen"],
        "seconds": round(time.perf_counter() - started, 3), "train_seconds": round(last["elapsed_s"], 3),
        "checkpoint": ckpt_path, "params": params, "preset": tc.preset, "world_size": ddp.world_size,
        "device": str(device), "resumed_from": resumed_from, "skipped": False,
    }
    if ddp.is_main:
        _write_loss_plot(fs, out_dir, history, f"{tc.preset}: {params / 1e6:.1f}M params, {step} steps")
        shards.write_bytes_atomic(fs, shards.join(out_dir, TRAIN_DONE_FILE),
                                  json.dumps({"fingerprint": fp, "result": result}, indent=2).encode())
    return result
