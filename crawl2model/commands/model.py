"""The playground and standalone training.

    crawl2model sample CKPT "prompt" [--max-new-tokens N] [--temperature T] [--top-k K] [--seed S]
    crawl2model next-token CKPT "I hope you" [--top-k 10] [--json]
    crawl2model train --run-dir DIR [--config PATH] [--max-steps N] [--device D]

CKPT is a checkpoint file, a ``08_train`` folder or a run dir (its ``08_train/ckpt.pt``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from crawl2model.commands.argtypes import at_least, json_object


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="generate text from a trained checkpoint")
    p.add_argument("ckpt", metavar="CKPT", help="ckpt.pt, a 08_train folder or a run dir")
    p.add_argument("prompt", help="text to continue ('' starts from a document boundary)")
    p.add_argument("--max-new-tokens", type=at_least(int, 0), default=100)
    p.add_argument("--temperature", type=at_least(float, 0), default=0.8, help="0 = greedy")
    p.add_argument("--top-k", type=at_least(int, 0), default=50, help="sample among the K likeliest tokens (0 = all)")
    p.add_argument("--seed", type=int, default=None, help="same seed, same text")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    _storage_options(p)
    p.set_defaults(func=_sample)

    p = sub.add_parser("next-token", help="the likeliest next tokens after a prompt, with probabilities")
    p.add_argument("ckpt", metavar="CKPT", help="ckpt.pt, a 08_train folder or a run dir")
    p.add_argument("prompt")
    p.add_argument("--top-k", type=at_least(int, 1), default=10)
    p.add_argument("--json", action="store_true", help='print a JSON list of {"token", "id", "prob"}')
    p.add_argument("--device", default="auto")
    _storage_options(p)
    p.set_defaults(func=_next_token)

    p = sub.add_parser("train", help="train the model alone on a run dir's existing token shards (07_tokens)")
    p.add_argument("--run-dir", required=True, help="the run dir holding 07_tokens; writes 08_train")
    p.add_argument("--config", help="pipeline YAML (default: the run dir's config.yaml, else built-in defaults)")
    p.add_argument("--max-steps", type=at_least(int, 1), help="override train.max_steps")
    p.add_argument("--preset", help="override train.preset")
    p.add_argument("--device", help="override train.device")
    _storage_options(p)
    p.set_defaults(func=_train)


def _storage_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage-options", type=json_object, default={}, metavar="JSON",
                   help='fsspec options for a checkpoint or run dir on an object store, e.g. '
                        '\'{"client_kwargs": {"endpoint_url": "..."}}\'')


def resolve_checkpoint(path: str, storage_options: dict | None = None) -> tuple[str, object]:
    """(the checkpoint file, its filesystem) for a ckpt.pt, a 08_train folder or a run dir."""
    from pipeline_lib import shards

    base = path.rstrip("/")
    fs = shards.filesystem(base, storage_options)
    for candidate in (base, f"{base}/ckpt.pt", f"{base}/08_train/ckpt.pt"):
        if fs.isfile(fs._strip_protocol(candidate)):
            return candidate, fs
    hint = "; on an object store, check --storage-options" if "://" in path else ""
    raise FileNotFoundError(f"{path}: no checkpoint (looked for the file, ckpt.pt and 08_train/ckpt.pt{hint})")


def _sample(args: argparse.Namespace) -> int:
    from pipeline_lib.model.sample import generate_text, load_checkpoint

    path, fs = resolve_checkpoint(args.ckpt, args.storage_options)
    model, tokenizer, _ = load_checkpoint(path, device=args.device, fs=fs)
    text = generate_text(model, tokenizer, args.prompt, max_new_tokens=args.max_new_tokens,
                         temperature=args.temperature, top_k=args.top_k or None, seed=args.seed)
    sys.stdout.write(args.prompt + text + "\n")
    return 0


def _next_token(args: argparse.Namespace) -> int:
    from pipeline_lib.model.sample import load_checkpoint, top_next_tokens

    path, fs = resolve_checkpoint(args.ckpt, args.storage_options)
    model, tokenizer, _ = load_checkpoint(path, device=args.device, fs=fs)
    rows = top_next_tokens(model, tokenizer, args.prompt, k=args.top_k)
    if args.json:
        json.dump([r.to_dict() for r in rows], sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    print(f"{'rank':>4}  {'prob':>8}  {'id':>7}  token")
    for rank, r in enumerate(rows, 1):
        print(f"{rank:>4}  {r.prob:>8.4f}  {r.id:>7}  {json.dumps(r.token, ensure_ascii=False)}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from pipeline_lib import shards
    from pipeline_lib.config import PipelineConfig, config_from_yaml, load_config
    from pipeline_lib.model.train import train

    run_dir = args.run_dir.rstrip("/")
    if "://" not in run_dir:  # done.json records the checkpoint's path: absolute, as a pipeline run writes it
        run_dir = os.path.abspath(run_dir)
    overrides = {"train": {k: v for k, v in (("max_steps", args.max_steps), ("preset", args.preset),
                                             ("device", args.device)) if v is not None}}
    fs = shards.filesystem(run_dir, args.storage_options)
    recorded = shards.join(run_dir, "config.yaml")
    # Training reads only the run dir: on a GPU machine the crawl's input files need not exist.
    if args.config:
        cfg = load_config(args.config, overrides, check_files=False)
    elif shards.exists(fs, recorded):  # the run's own config, local or on an object store
        cfg = config_from_yaml(shards.read_bytes(fs, recorded).decode("utf-8"), recorded, run_dir, overrides,
                               check_files=False)
    else:
        cfg = PipelineConfig.model_validate(overrides)
    fs = shards.filesystem(run_dir, args.storage_options or cfg.run.storage_options)

    def progress(row: dict) -> None:
        val = f"  val {row['val_loss']:.4f}" if row["val_loss"] is not None else ""
        mfu = f"  mfu {row['mfu']:.1%}" if row["mfu"] is not None else ""
        print(f"step {row['step']:>6}/{row['max_steps']}  loss {row['loss']:.4f}{val}  lr {row['lr']:.2e}  "
              f"{row['tokens_per_s']:,.0f} tok/s{mfu}", file=sys.stderr, flush=True)

    result = train(cfg, fs, shards.join(run_dir, "07_tokens"), shards.join(run_dir, "08_train"), progress=progress)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one summary, not one per process
        print(json.dumps(result))
    return 0
