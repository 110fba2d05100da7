"""Training data from the token shards (``07_tokens``): one flat token stream, cut into windows.

Each shard's ``tokens`` column is a list column; Arrow stores all its values in one flat buffer
and the row boundaries in an offsets buffer, so a shard becomes a numpy array without touching
single tokens in Python. Documents are concatenated in shard order (the tokenizer already ended
each with an end-of-text token), and training windows run across document boundaries, as GPT-2's
did.

The last ``val_fraction`` of documents is held out for validation. The training stream is cut into
non-overlapping windows of ``block_size + 1`` tokens (inputs and their next-token targets); each
epoch visits them in a seeded random order. A batch is a run of slots in that endless sequence of
epochs; with data parallelism, rank r takes the r-th share of each global batch, so the ranks see
disjoint windows. The whole data position is one integer (``cursor``), saved in checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from pipeline_lib import shards


@dataclass
class TokenStream:
    tokens: np.ndarray                    # every token of every document, in shard order
    doc_lengths: np.ndarray               # tokens per document, same order
    inputs: list[dict[str, Any]] = field(default_factory=list)  # shard name + sha256, for fingerprints
    tokenizer: dict[str, Any] | None = None  # what the manifests say about the encoding


def _flat_values(column: pa.ChunkedArray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    values, lengths = [], []
    for chunk in column.chunks:
        # flatten() honours the chunk's offsets (a sliced array's values buffer holds more).
        values.append(chunk.flatten().to_numpy(zero_copy_only=False))
        lengths.append(pc.list_value_length(chunk).fill_null(0).to_numpy(zero_copy_only=False))
    return values, lengths


def _tokenizer_from_manifest(manifest: dict[str, Any]) -> dict[str, Any] | None:
    sources = [manifest] + ([manifest["extra"]] if isinstance(manifest.get("extra"), dict) else [])
    for source in sources:
        for key in ("tokenizer", "encoding"):
            value = source.get(key)
            if isinstance(value, str):
                return {"encoding": value}
            if isinstance(value, dict):
                return dict(value)
    return None


def _token_manifests(fs, token_dir: str) -> dict[str, dict[str, Any]]:
    names = shards.list_shards(fs, token_dir)
    if not names:
        raise FileNotFoundError(f"{token_dir}: no token shards (_manifests/part-*.manifest.json) to train on")
    return {name: shards.load_manifest(fs, token_dir, name) for name in names}


def _describe(manifests: dict[str, dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]], dict[str, Any] | None]:
    inputs, tokenizer = [], None
    for name, manifest in manifests.items():
        inputs.append({"shard": name, "sha256": manifest["files"]["kept"]["sha256"]})
        tokenizer = tokenizer or _tokenizer_from_manifest(manifest)
    return list(manifests), inputs, tokenizer


def describe_shards(fs, token_dir: str) -> tuple[list[str], list[dict[str, Any]], dict[str, Any] | None]:
    """Shard names, their checksums and the tokenizer they name, from the manifests alone (cheap:
    enough to decide that a finished run needs no work)."""
    return _describe(_token_manifests(fs, token_dir))


def load_token_stream(fs, token_dir: str) -> TokenStream:
    """Read every complete shard of ``token_dir`` (checksums verified) into one stream."""
    manifests = _token_manifests(fs, token_dir)  # read once: described, then verified against
    names, inputs, tokenizer = _describe(manifests)
    values: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    for name in names:
        table = shards.read_verified(fs, token_dir, name, columns=["tokens"], manifest=manifests[name])
        v, n = _flat_values(table.column("tokens"))
        values += v
        lengths += n
    stream = np.concatenate(values) if values else np.zeros(0, np.uint32)
    if stream.dtype.kind not in "iu":
        raise ValueError(f"{token_dir}: token column holds {stream.dtype}, not integers")
    # uint16 covers vocabularies up to 65536 and halves the memory of a large stream.
    stream = stream.astype(np.uint16 if stream.size == 0 or stream.max() < 2**16 else np.uint32, copy=False)
    return TokenStream(stream, np.concatenate(lengths).astype(np.int64), inputs, tokenizer)


def split_train_val(stream: TokenStream, val_fraction: float, min_val_tokens: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Hold out the last documents (about ``val_fraction`` of the tokens) at a document boundary.

    Returns no validation part when the stream is too small to spare ``min_val_tokens`` while
    leaving at least as many for training; a tiny run still trains.
    """
    tokens = stream.tokens
    n = len(tokens)
    if val_fraction <= 0 or n < 2 * min_val_tokens:
        return tokens, None
    want = max(int(n * val_fraction), min_val_tokens)
    ends = np.cumsum(stream.doc_lengths)
    # The boundary closest to n - want that still leaves min_val_tokens on both sides, if it is within
    # half of ``want`` of it; else (one huge last document) the split falls inside a document, so
    # that the held-out part stays about val_fraction instead of taking most of the data.
    candidates = ends[(ends >= min_val_tokens) & (ends <= n - min_val_tokens)]
    split = n - want
    if candidates.size:
        nearest = int(candidates[np.argmin(np.abs(candidates - (n - want)))])
        if abs(nearest - (n - want)) <= want // 2:
            split = nearest
    return tokens[:split], tokens[split:]


class WindowSampler:
    """Seeded, resumable batches of (inputs, targets) windows for one data-parallel rank."""

    def __init__(self, tokens: np.ndarray, block_size: int, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1):
        if len(tokens) < block_size + 1:
            raise ValueError(f"{len(tokens)} training tokens cannot fill one window of {block_size} + 1; "
                             "lower train.block_size or tokenize more data")
        self.tokens = tokens
        self.block_size = block_size
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.starts = np.arange(0, len(tokens) - block_size, block_size, dtype=np.int64)
        self.cursor = 0  # global window slots consumed so far (all ranks)
        self._epoch = -1
        self._order = self.starts

    @property
    def n_windows(self) -> int:
        return len(self.starts)

    def _slot_starts(self, slots: np.ndarray) -> np.ndarray:
        out = np.empty(len(slots), dtype=np.int64)
        epochs = slots // self.n_windows
        for epoch in np.unique(epochs):  # at most two epochs per batch unless the data is tiny
            if epoch != self._epoch:
                rng = np.random.default_rng([self.seed, int(epoch)])
                self._order = self.starts[rng.permutation(self.n_windows)]
                self._epoch = int(epoch)
            mask = epochs == epoch
            out[mask] = self._order[slots[mask] % self.n_windows]
        return out

    def next_batch(self) -> np.ndarray:
        """(batch_size, block_size + 1) token windows for this rank; advances the global cursor."""
        first = self.cursor + self.rank * self.batch_size
        starts = self._slot_starts(np.arange(first, first + self.batch_size, dtype=np.int64))
        self.cursor += self.batch_size * self.world_size
        return windows(self.tokens, starts, self.block_size)

    @property
    def epoch(self) -> float:
        return self.cursor / self.n_windows

    def state_dict(self) -> dict[str, int]:
        return {"cursor": int(self.cursor), "n_windows": int(self.n_windows)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("n_windows", self.n_windows) != self.n_windows:
            raise ValueError(f"the checkpoint's data position belongs to a stream of {state['n_windows']} training "
                             f"windows and this run has {self.n_windows} (the held-out split moved: checkpoints "
                             "from before 2026-11-29 whose last document is very long); remove the checkpoint "
                             "to start over")
        self.cursor = int(state["cursor"])


def windows(tokens: np.ndarray, starts: np.ndarray, block_size: int) -> np.ndarray:
    index = starts[:, None] + np.arange(block_size + 1)[None, :]  # (B, T + 1), one gather
    return tokens[index].astype(np.int64)


def validation_batches(tokens: np.ndarray | None, block_size: int, batch_size: int, n_batches: int,
                       rank: int = 0, world_size: int = 1) -> list[np.ndarray]:
    """The same fixed windows at every eval, spread evenly over the held-out stream, so eval
    losses are comparable across steps; each rank gets its own share."""
    if tokens is None or len(tokens) < block_size + 1:
        return []
    all_starts = np.arange(0, len(tokens) - block_size, block_size, dtype=np.int64)
    want = min(len(all_starts), n_batches * batch_size * world_size)
    picked = all_starts[np.linspace(0, len(all_starts) - 1, want).round().astype(np.int64)]
    mine = picked[rank::world_size]
    return [windows(tokens, mine[i:i + batch_size], block_size) for i in range(0, len(mine), batch_size)]


def to_device(batch: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    t = torch.from_numpy(batch)
    if device.type == "cuda":
        t = t.pin_memory().to(device, non_blocking=True)
    return t[:, :-1].contiguous(), t[:, 1:].contiguous()
