"""Training throughput of our GPT: tokens/s and MFU, GPT-2 124M in bf16 on one GPU.

    .venv/bin/python bench/train_gpu.py                 # CUDA: gpt2-124m, bf16, torch.compile
    .venv/bin/python bench/train_gpu.py --cpu-smoke     # seconds on a CPU (also automatic without CUDA)
    .venv/bin/python bench/train_gpu.py --no-compile --batch-size 32

Self-contained: random tokens (throughput does not depend on the text), the model and optimizer of
``pipeline_lib.model``, the same step as ``train()`` (bf16 autocast, fused AdamW, clipping). Sized to
fit one accelerator call of under 8 minutes: build, compile and warm up, then time ``--steps``
optimizer steps with the GPU synchronised at both ends. Prints one JSON object LAST.

Reference: llm.c's GPT-2 124M run reaches about 38% MFU on an H100 (published); our goal is 45%.
MFU = (6 * params + 12 * layers * seq * width) * tokens/s / peak bf16 FLOP/s (the PaLM formula, the
same one nanoGPT and llm.c report).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# Run as a script, Python puts bench/ first on sys.path, where a sibling (bench/tokenize.py) would
# shadow the standard library module torch imports; the repo root is what this script needs.
_BENCH_DIR = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH_DIR]
sys.path.insert(0, str(_BENCH_DIR.parent))

import torch  # noqa: E402

from pipeline_lib.model.gpt import GPT, preset  # noqa: E402
from pipeline_lib.model.train import PEAK_BF16_FLOPS  # noqa: E402

LLMC_H100_MFU = 0.38
GOAL_MFU = 0.45


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cpu-smoke", action="store_true", help="tiny config on CPU (automatic without CUDA)")
    p.add_argument("--preset", default=None, help="model preset (default gpt2-124m; tiny with --cpu-smoke)")
    p.add_argument("--batch-size", type=int, default=None, help="sequences per step (default: 64 on >= 70 GB GPUs, else 16)")
    p.add_argument("--seq-len", type=int, default=None, help="tokens per sequence (default: the preset's context)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 30 GPU / 3 CPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 8 GPU / 1 CPU)")
    p.add_argument("--no-compile", action="store_true", help="eager mode (compile is on by default on CUDA)")
    p.add_argument("--loop", action="store_true",
                   help="measure the whole pipeline loop instead: train() on synthetic token shards "
                        "(data windows, eval, checkpoint, metrics), reporting its per-step tokens/s and MFU")
    p.add_argument("--no-baseline", action="store_true", help="skip the eager (uncompiled) comparison run")
    p.add_argument("--peak-flops", type=float, default=None, help="per-device peak FLOP/s (default: known GPU table)")
    return p.parse_args()


def device_peak(args, device: torch.device) -> float | None:
    if args.peak_flops:
        return args.peak_flops
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def build(preset_name: str, seq_len: int | None, device: torch.device, compile_model: bool):
    torch.manual_seed(0)
    cfg = preset(preset_name, vocab_size=50257, block_size=seq_len)
    model = GPT(cfg).to(device)
    optimizer = model.optimizer(6e-4, 0.1, (0.9, 0.95), device.type)
    step_model = torch.compile(model) if compile_model else model
    return cfg, model, step_model, optimizer


def run_steps(step_model, model, optimizer, batch_size, cfg, device, n: int) -> float:
    """n optimizer steps on random tokens; returns the wall seconds with the device synchronised."""
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    gen = torch.Generator(device=device).manual_seed(1)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n):
        data = torch.randint(0, cfg.vocab_size, (batch_size, cfg.block_size + 1), device=device, generator=gen)
        x, y = data[:, :-1], data[:, 1:]
        with autocast:
            _, loss = step_model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure(preset_name: str, seq_len: int | None, device: torch.device, compile_model: bool,
            batch_size: int, warmup: int, steps: int) -> dict:
    """Build, warm up (compiling), then time; halves the batch on out-of-memory."""
    t0 = time.perf_counter()
    while True:
        try:
            cfg, model, step_model, optimizer = build(preset_name, seq_len, device, compile_model)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            run_steps(step_model, model, optimizer, batch_size, cfg, device, warmup)  # compile happens here
            warmup_s = time.perf_counter() - t0
            seconds = run_steps(step_model, model, optimizer, batch_size, cfg, device, steps)
            break
        except torch.OutOfMemoryError:
            if batch_size == 1:
                raise
            print(f"out of memory at batch {batch_size}; halving", file=sys.stderr)
            model = step_model = optimizer = None
            torch.cuda.empty_cache()
            batch_size //= 2
    out = {
        "params": model.num_params(), "batch_size": batch_size, "seq_len": cfg.block_size,
        "flops_per_token": model.flops_per_token(cfg.block_size), "warmup_s": round(warmup_s, 2),
        "step_ms": round(1000 * seconds / steps, 2), "tokens_per_s": batch_size * cfg.block_size * steps / seconds,
        "peak_memory_gb": round(torch.cuda.max_memory_allocated(device) / 1e9, 2) if device.type == "cuda" else None,
    }
    del model, step_model, optimizer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def measure_loop(args, preset_name: str, device: torch.device, compile_model: bool, batch_size: int,
                 warmup: int, steps: int, peak: float | None) -> dict:
    """train() itself on random-token shards in a temporary run dir; steps after warmup are timed."""
    import statistics
    import tempfile

    import numpy as np
    import pyarrow as pa

    from pipeline_lib import shards
    from pipeline_lib.config import parse_config
    from pipeline_lib.model.train import train

    seq_len = args.seq_len or {"tiny": 64, "small": 256}.get(preset_name, 1024)
    total_steps = warmup + steps
    n_tokens = int(batch_size * seq_len * total_steps * 1.2) + 10 * seq_len  # one epoch, plus validation
    n_docs = -(-n_tokens // 1000)  # documents of 1000 tokens
    docs = np.random.default_rng(0).integers(0, 50257, (n_docs, 1000), dtype=np.uint16)
    with tempfile.TemporaryDirectory() as run_dir:
        token_dir, fs = f"{run_dir}/07_tokens", shards.filesystem(run_dir)
        table = pa.table({"id": [str(i) for i in range(len(docs))],
                          "tokens": pa.array(list(docs), pa.list_(pa.uint16())),
                          "n_tokens": pa.array([1000] * len(docs), pa.int32())})
        entry = shards.write_table_file(fs, token_dir, "part-00000.parquet", table)
        shards.write_manifest(fs, token_dir, "part-00000", shards.build_manifest(
            stage="tokens", name="part-00000", files={"kept": entry}, schema=table.schema, counters={},
            seconds=0.0, config_hash="bench", inputs=[], extra={"tokenizer": {"kind": "ids", "n_vocab": 50257}}))
        cfg = parse_config({"train": {
            "preset": preset_name, "block_size": seq_len, "batch_size": batch_size, "max_steps": total_steps,
            "learning_rate": 6e-4, "warmup_steps": min(10, total_steps), "eval_interval": total_steps,
            "eval_batches": 2, "checkpoint_interval": total_steps, "val_fraction": 0.01,
            "device": str(device) if device.type == "cpu" else "auto", "compile": compile_model,
            "peak_flops": peak}})
        t0 = time.perf_counter()
        result = train(cfg, fs, token_dir, f"{run_dir}/08_train")
        rows = pq_rows(f"{run_dir}/08_train/metrics.parquet")
    # The last step carries the evaluation (and the checkpoint is written after it); leave it out.
    timed = [r for r in rows if warmup < r["step"] < total_steps] or rows[-1:]
    tokens_per_s = statistics.median(r["tokens_per_s"] for r in timed)
    return {"mode": "loop", "params": result["params"], "batch_size": batch_size, "seq_len": seq_len,
            "flops_per_token": None, "warmup_s": None, "loop_total_s": round(time.perf_counter() - t0, 2),
            "step_ms": round(1000 * batch_size * seq_len / tokens_per_s, 2), "tokens_per_s": tokens_per_s,
            "final_loss": result["final_loss"],
            "peak_memory_gb": round(torch.cuda.max_memory_allocated(device) / 1e9, 2) if device.type == "cuda" else None}


def pq_rows(path: str) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def main() -> int:
    args = parse_args()
    cpu = args.cpu_smoke or not torch.cuda.is_available()
    device = torch.device("cpu" if cpu else "cuda")
    if cpu:
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    preset_name = args.preset or ("tiny" if cpu else "gpt2-124m")
    compile_model = not cpu and not args.no_compile
    steps = args.steps or (3 if cpu else 30)
    warmup = args.warmup if args.warmup is not None else (1 if cpu else 8)
    if args.batch_size:
        batch_size = args.batch_size
    elif cpu:
        batch_size = 4
    else:
        batch_size = 64 if torch.cuda.get_device_properties(device).total_memory >= 70e9 else 16

    peak = device_peak(args, device)
    if args.loop:
        ours = measure_loop(args, preset_name, device, compile_model, batch_size, warmup, steps, peak)
        cfg = preset(preset_name, vocab_size=50257, block_size=ours["seq_len"])
        with torch.device("meta"):
            ours["flops_per_token"] = GPT(cfg).flops_per_token(cfg.block_size)
        args.no_baseline = True
    else:
        ours = measure(preset_name, args.seq_len, device, compile_model, batch_size, warmup, steps)
    # The same model and step without torch.compile: what a plain PyTorch loop gets, in the same run.
    eager = None
    if compile_model and not args.no_baseline:
        eager = measure(preset_name, args.seq_len, device, False, ours["batch_size"], 3, min(steps, 10))
    flops_per_token = ours["flops_per_token"]
    tokens_per_s = ours["tokens_per_s"]
    mfu = flops_per_token * tokens_per_s / peak if peak else None
    result = {
        "bench": "train_gpu", "mode": "loop" if args.loop else "step",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "preset": preset_name, "params": ours["params"], "batch_size": ours["batch_size"], "seq_len": ours["seq_len"],
        "dtype": "bfloat16" if device.type == "cuda" else "float32", "compile": compile_model,
        "warmup_steps": warmup, "warmup_s": ours["warmup_s"], "timed_steps": steps, "step_ms": ours["step_ms"],
        "peak_memory_gb": ours["peak_memory_gb"], "loop_total_s": ours.get("loop_total_s"),
        "flops_per_token": flops_per_token, "peak_flops": peak,
        "eager_tokens_per_s": eager["tokens_per_s"] if eager else None,
        "eager_mfu": round(flops_per_token * eager["tokens_per_s"] / peak, 4) if eager and peak else None,
        "speedup_vs_eager": round(tokens_per_s / eager["tokens_per_s"], 3) if eager else None,
        "reference": {"llm.c_gpt2_124m_h100_mfu": LLMC_H100_MFU, "goal_mfu": GOAL_MFU},
        "mfu_vs_llmc": round(mfu / LLMC_H100_MFU, 3) if mfu else None,
        "tokens_per_s": round(tokens_per_s, 1),
        "mfu": round(mfu, 4) if mfu else None,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
