"""Load a checkpoint and talk to it: text generation and next-token probabilities.

A checkpoint carries its model shape and the tokenizer it was trained with (a tiktoken encoding
name, or a trained vocabulary embedded whole), so ``ckpt.pt`` alone is enough to sample::

    model, tokenizer, ckpt = load_checkpoint("runs/x/08_train/ckpt.pt")
    text = generate_text(model, tokenizer, "Once upon", max_new_tokens=50, seed=1)
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from pipeline_lib.model.gpt import GPT, config_from_dict


# ---------------------------------------------------------------------------------------------
# Tokenizers: what a checkpoint records and how it becomes encode/decode again.


class ByteTokenizer:
    """Raw UTF-8 bytes as tokens 0..255, plus 256 as end-of-text (for tests and byte-level runs)."""

    n_vocab = 257
    eot_token = 256
    EOT_TEXT = "<|endoftext|>"

    def encode(self, text: str, allowed_special: str | set = ()) -> list[int]:
        """Bytes; with ``allowed_special`` ("all", as tiktoken's), "<|endoftext|>" is token 256."""
        if not (allowed_special == "all" or self.EOT_TEXT in allowed_special) or self.EOT_TEXT not in text:
            return list(text.encode("utf-8"))
        ids: list[int] = []
        for i, part in enumerate(text.split(self.EOT_TEXT)):
            if i:
                ids.append(self.eot_token)
            ids.extend(part.encode("utf-8"))
        return ids

    def decode(self, ids: list[int]) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")

    def decode_single_token_bytes(self, token: int) -> bytes:
        return bytes([token]) if token < 256 else b"<|endoftext|>"


class IdTokenizer:
    """Token ids without a vocabulary (pre-tokenized or synthetic data): text is the ids, spaced."""

    def __init__(self, n_vocab: int):
        self.n_vocab = n_vocab

    def encode(self, text: str) -> list[int]:
        ids = [int(t) for t in text.split()]
        if any(not 0 <= i < self.n_vocab for i in ids):
            raise ValueError(f"token ids must lie in [0, {self.n_vocab})")
        return ids

    def decode(self, ids: list[int]) -> str:
        return "".join(f" {i}" for i in ids)

    def decode_single_token_bytes(self, token: int) -> bytes:
        return str(token).encode()


def tokenizer_from_spec(spec: dict[str, Any]):
    """An object with ``encode``, ``decode`` and ``n_vocab`` from a checkpoint's tokenizer spec."""
    kind = spec.get("kind", "tiktoken")
    if kind == "bytes":
        return ByteTokenizer()
    if kind == "ids":
        return IdTokenizer(int(spec["n_vocab"]))
    if kind == "tiktoken":
        from pipeline_lib.tokenization import load_pretrained  # the tokens stage's loader: same names, same errors

        return load_pretrained(spec["encoding"])
    if kind == "tiktoken_ranks":
        import tiktoken

        from pipeline_lib.bpe_train import ranks_from_text

        ranks = ranks_from_text(spec["ranks"].encode("ascii"))
        specials = {k: int(v) for k, v in spec["special_tokens"].items()}
        return tiktoken.Encoding(spec["name"], pat_str=spec["pattern"], mergeable_ranks=ranks, special_tokens=specials)
    raise ValueError(f"unknown tokenizer kind {kind!r} in checkpoint")


def encode_prompt(tokenizer, text: str) -> list[int]:
    # A prompt may contain "<|endoftext|>" on purpose; let it mean the special token.
    try:
        return tokenizer.encode(text, allowed_special="all")
    except TypeError:
        return tokenizer.encode(text)


def start_token(tokenizer) -> int:
    """What an empty prompt starts from: end-of-text, the boundary every document follows."""
    try:
        return int(tokenizer.eot_token)
    except (AttributeError, KeyError):
        return 0


def token_text(tokenizer, token_id: int) -> str:
    try:
        return tokenizer.decode_single_token_bytes(token_id).decode("utf-8", errors="replace")
    except (KeyError, AttributeError):
        return tokenizer.decode([token_id])


# ---------------------------------------------------------------------------------------------
# Checkpoints


def read_checkpoint(fs, path: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Only tensors and plain values are unpickled (``weights_only``): a checkpoint cannot run code."""
    with fs.open(fs._strip_protocol(path), "rb") as f:
        data = f.read()
    return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():  # else: "not a checkpoint", wrongly
        raise ValueError(f"device {name!r}: torch sees no CUDA GPU here; use 'cpu' or 'auto'")
    try:
        return torch.device(name)
    except RuntimeError as e:  # "gpu", "cuda:x"
        raise ValueError(f"device {name!r}: not a device torch knows (auto, cpu, cuda, cuda:N, mps)") from e


def _why(e: BaseException) -> str:
    """One line for an error message: torch's unpickling errors run to a page of advice."""
    first = next((line.strip() for line in str(e).splitlines() if line.strip()), "")
    return f"{type(e).__name__}: {first[:200]}" if first else type(e).__name__


def load_checkpoint(path: str, device: str = "auto", fs=None) -> tuple[GPT, Any, dict[str, Any]]:
    if fs is None:
        from pipeline_lib.shards import filesystem

        fs = filesystem(path)  # read_checkpoint strips the protocol itself
    dev = pick_device(device)
    try:
        ckpt = read_checkpoint(fs, path, map_location=dev)
    except (OSError, torch.OutOfMemoryError):
        raise  # a file we cannot read or a device too small: not the checkpoint's fault
    except Exception as e:  # empty, truncated, garbage or not a torch file at all
        from pipeline_lib.shards import is_storage_error

        if is_storage_error(e):  # credentials, endpoint: not the file's fault
            raise ValueError(f"{path}: cannot read it ({_why(e)}); an object store may need --storage-options") from e
        raise ValueError(f"{path}: not a crawl2model checkpoint ({_why(e)})") from e
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: not a crawl2model checkpoint (holds a {type(ckpt).__name__}, not a dict)")
    missing = [k for k in ("model_config", "model", "tokenizer") if k not in ckpt]
    if missing:
        raise ValueError(f"{path}: not a crawl2model checkpoint (no {', '.join(map(repr, missing))} entry)")
    try:
        model = GPT(config_from_dict(ckpt["model_config"]))
        model.load_state_dict(ckpt["model"])
    except torch.OutOfMemoryError:
        raise
    except (TypeError, KeyError, AttributeError, ValueError, RuntimeError) as e:
        raise ValueError(f"{path}: not a crawl2model checkpoint ({_why(e)})") from e
    try:  # its own ValueErrors (unknown kind, tokenizer not available offline) already say what is wrong
        tokenizer = tokenizer_from_spec(ckpt["tokenizer"])
    except (TypeError, KeyError, AttributeError) as e:
        raise ValueError(f"{path}: not a crawl2model checkpoint (bad tokenizer entry: {_why(e)})") from e
    model.to(dev).eval()
    return model, tokenizer, ckpt


# ---------------------------------------------------------------------------------------------
# Generation


def _real_vocab_logits(model: GPT, idx: torch.Tensor, kv_cache: list[dict] | None = None,
                       banned: list[int] | None = None) -> torch.Tensor:
    """Last-position logits over the tokenizer's real vocabulary (padding rows cut off, ids that
    are no token at all set to -inf)."""
    logits, _ = model(idx, kv_cache=kv_cache)
    logits = logits[:, -1, : model.config.vocab_size].float()
    if banned:
        logits[:, banned] = float("-inf")
    return logits


@functools.lru_cache(maxsize=8)  # a scan of the vocabulary, else once per prompt; callers do not mutate it
def non_token_ids(tokenizer) -> list[int]:
    """Ids below ``n_vocab`` that are no token: tiktoken's cl100k_base has 16 (100256 and
    100261-100275) and o200k_base 19, which decode to nothing (KeyError) if ever sampled."""
    ranks = getattr(tokenizer, "_mergeable_ranks", None)
    if ranks is None:
        return []
    used = set(ranks.values()) | set((getattr(tokenizer, "_special_tokens", None) or {}).values())
    return [i for i in range(tokenizer.n_vocab) if i not in used]


@torch.no_grad()
def generate(model: GPT, prompt_ids: list[int], max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, seed: int | None = None, stop_token: int | None = None,
             use_cache: bool = True, banned: list[int] | None = None) -> list[int]:
    """Autoregressive sampling; temperature 0 is greedy. A seed makes the output reproducible
    (its own generator, so the global RNG is left alone).

    With ``use_cache`` each step feeds only the newest token (keys and values of the earlier ones
    are cached) until the context is full; from then on every step re-reads the last
    ``block_size`` tokens, the same sliding window as without the cache.
    """
    device = next(model.parameters()).device
    block_size = model.config.block_size
    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else torch.seed())
    context = list(prompt_ids)[-block_size:]
    cache = model.new_kv_cache() if use_cache else None
    logits = _real_vocab_logits(model, torch.tensor([context], dtype=torch.long, device=device), cache, banned)
    out: list[int] = []
    for i in range(max_new_tokens):
        if temperature <= 0:
            next_id = logits.argmax(dim=-1, keepdim=True)
        else:
            # Shifted so the largest logit is 0 first: dividing by a tiny temperature (1e-45) then
            # gives -inf, not inf - inf = nan, and sampling becomes greedy as it should.
            scaled = (logits - logits.max(dim=-1, keepdim=True).values) / temperature
            if top_k is not None and top_k < scaled.size(-1):
                kth = torch.topk(scaled, top_k).values[:, -1:]
                scaled = scaled.masked_fill(scaled < kth, float("-inf"))
            next_id = torch.multinomial(F.softmax(scaled, dim=-1), 1, generator=generator)
        token = int(next_id)
        if stop_token is not None and token == stop_token:
            break
        out.append(token)
        if i == max_new_tokens - 1:
            break
        context.append(token)
        if cache is not None and len(context) <= block_size:
            logits = _real_vocab_logits(model, next_id.view(1, 1), cache, banned)
        else:
            context = context[-block_size:]
            logits = _real_vocab_logits(model, torch.tensor([context], dtype=torch.long, device=device), banned=banned)
    return out


def generate_text(model: GPT, tokenizer, prompt: str, max_new_tokens: int = 100, temperature: float = 1.0,
                  top_k: int | None = None, seed: int | None = None) -> str:
    ids = encode_prompt(tokenizer, prompt) or [start_token(tokenizer)]
    return tokenizer.decode(generate(model, ids, max_new_tokens, temperature, top_k, seed,
                                     banned=non_token_ids(tokenizer)))


@dataclass(frozen=True)
class TokenProb:
    token: str
    id: int
    prob: float

    def to_dict(self) -> dict[str, Any]:
        return {"token": self.token, "id": self.id, "prob": self.prob}


@torch.no_grad()
def next_token_distribution(model: GPT, tokenizer, prompt: str) -> torch.Tensor:
    """P(next token | prompt) over the real vocabulary (sums to 1)."""
    device = next(model.parameters()).device
    ids = (encode_prompt(tokenizer, prompt) or [start_token(tokenizer)])[-model.config.block_size:]
    logits = _real_vocab_logits(model, torch.tensor([ids], dtype=torch.long, device=device),
                                banned=non_token_ids(tokenizer))
    return F.softmax(logits, dim=-1)[0].cpu()


def top_next_tokens(model: GPT, tokenizer, prompt: str, k: int = 10) -> list[TokenProb]:
    probs = next_token_distribution(model, tokenizer, prompt)
    banned = non_token_ids(tokenizer)
    if banned:  # never listed, not even at probability 0
        probs = probs.clone()
        probs[banned] = -1.0
    values, ids = torch.topk(probs, min(k, probs.numel() - len(banned)))
    return [TokenProb(token_text(tokenizer, int(i)), int(i), float(p)) for p, i in zip(values, ids)]
