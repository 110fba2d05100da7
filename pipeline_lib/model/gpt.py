"""A decoder-only transformer (GPT-2 shaped) in one file.

    token ids (B, T) -> token + position embeddings -> n_layer x [pre-norm attention, pre-norm MLP]
    -> final LayerNorm -> logits over the (padded) vocabulary, whose weight is the token embedding.

Presets run from a laptop CPU (``tiny``) to GPT-2 124M (``gpt2-124m``)::

    from pipeline_lib.model.gpt import GPT, GPTConfig, preset
    model = GPT(preset("tiny", vocab_size=50257))
    logits, loss = model(idx, targets)

The whole ``GPTConfig`` is stored in every checkpoint (``asdict``), so a checkpoint rebuilds its
own model without knowing which preset made it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from pipeline_lib.config import MODEL_PRESETS

# Matmuls run fastest when the large dimension is a multiple of 64 (tensor-core tiles), so the
# vocabulary is padded: GPT-2's 50257 tokens become 50304. The extra rows are never targets and
# the sampler masks them, so they only cost a little memory.
VOCAB_MULTIPLE = 64


def pad_vocab(vocab_size: int, multiple: int = VOCAB_MULTIPLE) -> int:
    return ((vocab_size + multiple - 1) // multiple) * multiple


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 50257        # real tokens of the tokenizer; ids >= this are padding
    padded_vocab_size: int = 50304  # rows of the embedding / logits (vocab_size rounded up to 64)
    block_size: int = 1024         # longest context the position embedding covers
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0           # 0 for pretraining; only worth it for small data, many epochs
    bias: bool = True              # biases in Linear and LayerNorm, as GPT-2 has them

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.padded_vocab_size < self.vocab_size:
            raise ValueError("padded_vocab_size is smaller than vocab_size")

    def to_dict(self) -> dict:
        return asdict(self)


# Shapes only; the vocabulary comes from the tokenizer the run used.
PRESETS: dict[str, dict[str, int]] = {
    "tiny": dict(n_layer=2, n_head=2, n_embd=64, block_size=64),        # CPU, seconds
    "small": dict(n_layer=6, n_head=6, n_embd=384, block_size=256),     # CPU minutes / small GPU
    "gpt2-124m": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024),
    "gpt2-350m": dict(n_layer=24, n_head=16, n_embd=1024, block_size=1024),
}
assert tuple(PRESETS) == MODEL_PRESETS, "train.preset is validated against config.MODEL_PRESETS: keep them equal"


def preset(name: str, vocab_size: int, block_size: int | None = None, dropout: float = 0.0) -> GPTConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}")
    shape = dict(PRESETS[name])
    if block_size is not None:
        shape["block_size"] = block_size
    return GPTConfig(vocab_size=vocab_size, padded_vocab_size=pad_vocab(vocab_size), dropout=dropout, **shape)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.proj.is_residual_projection = True
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        B, T, C = x.shape
        head_dim = C // self.n_head
        q, k, v = self.qkv(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.n_head, head_dim).transpose(1, 2)  # (B, H, T, D)
        k = k.view(B, T, self.n_head, head_dim).transpose(1, 2)
        v = v.view(B, T, self.n_head, head_dim).transpose(1, 2)
        if cache is not None:  # generation: keys and values of earlier positions are kept, not redone
            if "k" in cache:
                k = torch.cat([cache["k"], k], dim=2)  # (B, H, past + T, D)
                v = torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        # Flash / memory-efficient kernels on GPU; the causal mask never materialises. One new token
        # after cached ones may see all of them, so the mask is only needed when q and k align.
        y = F.scaled_dot_product_attention(q, k, v, is_causal=T == k.size(2),
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.proj.is_residual_projection = True
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x), approximate="tanh")))


class Block(nn.Module):
    """Pre-norm: normalise the input of each sublayer, keep the residual stream un-normalised."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_attn = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_mlp = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_attn(x), cache)
        return x + self.mlp(self.ln_mlp(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.token_embedding = nn.Embedding(cfg.padded_vocab_size, cfg.n_embd)
        self.position_embedding = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.embed_dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_final = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.padded_vocab_size, bias=False)
        # Weight tying: the input and output token representations are one matrix (GPT-2 does
        # this; it saves padded_vocab * n_embd parameters, 38M of GPT-2 124M's).
        self.lm_head.weight = self.token_embedding.weight
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            std = 0.02
            if getattr(module, "is_residual_projection", False):
                # Each block adds two projections to the residual stream; scaling them keeps the
                # stream's variance from growing with depth (GPT-2 paper, section 2.3).
                std = 0.02 / math.sqrt(2 * self.config.n_layer)
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, kv_cache: list[dict] | None = None):
        """idx (B, T) token ids -> logits (B, T, padded_vocab); loss when targets (B, T) are given.

        ``kv_cache`` (one dict per block, from ``new_kv_cache``) is for generation: the first call
        fills it from the prompt, each later call passes only the single newest token.
        """
        B, T = idx.shape
        past = kv_cache[0]["k"].size(2) if kv_cache and "k" in kv_cache[0] else 0
        if past and T != 1:
            raise ValueError("with a filled kv_cache, pass one new token at a time")
        if past + T > self.config.block_size:
            raise ValueError(f"sequence of {past + T} tokens exceeds the context of {self.config.block_size}")
        positions = torch.arange(past, past + T, device=idx.device)
        x = self.embed_dropout(self.token_embedding(idx) + self.position_embedding(positions))  # (B, T, C)
        for i, block in enumerate(self.blocks):
            x = block(x, kv_cache[i] if kv_cache is not None else None)
        logits = self.lm_head(self.ln_final(x))  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss

    def new_kv_cache(self) -> list[dict]:
        return [{} for _ in self.blocks]

    def num_params(self, include_position: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())  # tied weights are counted once
        return n if include_position else n - self.position_embedding.weight.numel()

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token (forward + backward), as in the PaLM paper's appendix B:
        6 per parameter for the matmuls plus the attention scores, 12 * layers * seq * width."""
        cfg = self.config
        T = seq_len or cfg.block_size
        return 6 * self.num_params(include_position=False) + 12 * cfg.n_layer * T * cfg.n_embd

    def optimizer(self, lr: float, weight_decay: float, betas: tuple[float, float], device_type: str):
        """AdamW that decays matrices (linear weights, embeddings) but not biases or norm gains."""
        params = [p for p in self.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        # The fused kernel is one launch for all parameters instead of several per tensor.
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=device_type == "cuda")


def config_from_dict(d: dict) -> GPTConfig:
    known = {k: v for k, v in d.items() if k in GPTConfig.__dataclass_fields__}
    return GPTConfig(**known)
