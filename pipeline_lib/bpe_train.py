"""Train a byte-level BPE on a corpus and save it so that it loads as a ``tiktoken.Encoding``.

Training uses Hugging Face ``tokenizers`` (a well-kept Rust trainer): text is split by the same
regex tiktoken uses at encode time, each piece is mapped to GPT-2's byte alphabet, and the most
frequent adjacent pair is merged until the vocabulary is full. Every one of the 256 bytes is in
the vocabulary, so any Unicode text encodes and decodes losslessly.

A saved tokenizer is a folder:

    ranks.tiktoken   one "base64(token bytes) rank" line per token, tiktoken's own file format
    meta.json        name, split pattern, special tokens, hashes, what it was trained on (written last:
                     its presence marks the folder complete)

Special tokens (``<|endoftext|>`` first) get the ids right after the last rank.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any, Iterable, Iterator

from pipeline_lib import shards

RANKS_FILE = "ranks.tiktoken"
META_FILE = "meta.json"
EOT = "<|endoftext|>"
FORMAT_VERSION = 1

# Split patterns at encode time (tiktoken / fancy-regex syntax). "cl100k" keeps digits in groups of
# up to three and attaches one leading non-letter to words; "gpt2" is the original GPT-2 split.
PATTERNS = {
    "cl100k": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
    "gpt2": r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s""",
}
# The same splits for the trainer's Oniguruma engine, which reads "x{1,3}+" as "repeat x{1,3}"
# rather than as a possessive quantifier, and "$" as end of line: greedy forms without "\s++$"
# split identically on the texts that matter here (the trailing-whitespace case is covered by
# "\s+(?!\S)").
_TRAINER_PATTERNS = {
    "cl100k": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s""",
    "gpt2": r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s""",
}


def byte_alphabet() -> dict[str, int]:
    """GPT-2's printable stand-in character for each byte, inverted: character -> byte value.

    Printable Latin-1 bytes stand for themselves; the others are shifted to code points 256+ so
    that a byte-level vocabulary can be written as ordinary strings.
    """
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = {b: chr(b) for b in printable}
    shift = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + shift)
            shift += 1
    return {c: b for b, c in chars.items()}


def ranks_to_text(ranks: dict[bytes, int]) -> bytes:
    lines = [base64.b64encode(tok) + b" " + str(rank).encode() for tok, rank in sorted(ranks.items(), key=lambda kv: kv[1])]
    return b"\n".join(lines) + b"\n"


def ranks_from_text(data: bytes) -> dict[bytes, int]:
    ranks = {}
    for line in data.splitlines():
        if line.strip():
            tok, rank = line.split()
            ranks[base64.b64decode(tok)] = int(rank)
    return ranks


def ranks_sha256(ranks: dict[bytes, int], pattern: str, special_tokens: dict[str, int]) -> str:
    """Identity of a vocabulary: equal hashes encode every text to the same ids."""
    h = hashlib.sha256(ranks_to_text(ranks))
    h.update(pattern.encode())
    h.update(json.dumps(special_tokens, sort_keys=True).encode())
    return h.hexdigest()


def train_bpe(texts: Iterable[str], vocab_size: int, *, min_frequency: int = 2, pattern: str = "cl100k",
              special_tokens: list[str] | None = None) -> tuple[dict[bytes, int], dict[str, int]]:
    """Learn merges from ``texts``; returns (mergeable ranks, special token -> id).

    ``vocab_size`` counts everything, special tokens included. The result can be smaller when the
    corpus has no more pairs seen ``min_frequency`` times.
    """
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    specials = list(special_tokens if special_tokens is not None else [EOT])
    if EOT not in specials:
        specials.insert(0, EOT)
    if len(set(specials)) != len(specials):
        raise ValueError(f"duplicate special tokens: {specials}")
    if pattern not in PATTERNS:
        raise ValueError(f"unknown split pattern {pattern!r}; known: {sorted(PATTERNS)}")
    n_ranks = vocab_size - len(specials)
    if n_ranks < 256:
        raise ValueError(f"vocab_size {vocab_size} is too small: 256 byte tokens + {len(specials)} special tokens")

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_TRAINER_PATTERNS[pattern]), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=n_ranks, min_frequency=min_frequency, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tokenizer.train_from_iterator(texts, trainer)

    # The trainer numbers the 256 bytes first, then each merge in the order it was learned; keeping
    # that order as the rank makes tiktoken apply merges in the trained priority.
    to_byte = byte_alphabet()
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    ranks: dict[bytes, int] = {}
    for token, _ in vocab:
        ranks[bytes(to_byte[c] for c in token)] = len(ranks)
    if len(ranks) < 256 or any(bytes([b]) not in ranks for b in range(256)):
        raise RuntimeError("trained vocabulary lacks some single bytes; it could not encode every text")
    special_ids = {tok: len(ranks) + i for i, tok in enumerate(specials)}
    return ranks, special_ids


def save_tokenizer(fs, out_dir: str, name: str, ranks: dict[bytes, int], special_tokens: dict[str, int],
                   pattern: str, trained_on: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the ranks file, then meta.json (last, so its presence means the folder is complete)."""
    pat_str = PATTERNS.get(pattern, pattern)
    shards.write_bytes_atomic(fs, shards.join(out_dir, RANKS_FILE), ranks_to_text(ranks))
    meta = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "pattern": pat_str,
        "special_tokens": special_tokens,
        "n_vocab": max([*ranks.values(), *special_tokens.values()]) + 1,
        "ranks_sha256": ranks_sha256(ranks, pat_str, special_tokens),
        "trained_on": trained_on or {},
    }
    shards.write_bytes_atomic(fs, shards.join(out_dir, META_FILE), json.dumps(meta, indent=2, sort_keys=True).encode())
    return meta


def read_meta(fs, tokenizer_dir: str) -> dict[str, Any] | None:
    return shards.read_json_or_none(fs, shards.join(tokenizer_dir, META_FILE))


def load_tokenizer_dir(fs, tokenizer_dir: str):
    """A saved tokenizer folder as a ``tiktoken.Encoding``; a clear ``ValueError`` when unusable."""
    import tiktoken

    meta = read_meta(fs, tokenizer_dir)
    if meta is None:
        raise ValueError(f"{tokenizer_dir}: not a saved tokenizer (no readable {META_FILE}); "
                         "create one with `crawl2model train-tokenizer --out DIR`")
    try:
        ranks = ranks_from_text(shards.read_bytes(fs, shards.join(tokenizer_dir, RANKS_FILE)))
    except (FileNotFoundError, ValueError) as e:
        raise ValueError(f"{tokenizer_dir}: unreadable {RANKS_FILE} ({e})") from None
    specials = {k: int(v) for k, v in meta["special_tokens"].items()}
    actual = ranks_sha256(ranks, meta["pattern"], specials)
    if actual != meta["ranks_sha256"]:
        raise ValueError(f"{tokenizer_dir}: {RANKS_FILE} does not match {META_FILE} (sha256 {actual[:12]} != "
                         f"{meta['ranks_sha256'][:12]}); retrain it")
    return tiktoken.Encoding(meta["name"], pat_str=meta["pattern"], mergeable_ranks=ranks, special_tokens=specials)


def iter_text_chunks(text: str, chunk_chars: int = 1 << 16) -> Iterator[str]:
    """Cut a long text at line ends into pieces of about ``chunk_chars`` (the trainer's batches)."""
    start = 0
    while start < len(text):
        end = min(len(text), start + chunk_chars)
        if end < len(text):
            nl = text.rfind("\n", start, end)
            end = nl + 1 if nl > start else end
        yield text[start:end]
        start = end


def iter_training_texts(fs, paths: list[str], max_bytes: int | None = None) -> Iterator[str]:
    """Texts from plain text files, Parquet files with a ``text`` column, or stage dirs of shards.

    Stops after ``max_bytes`` of UTF-8 text (whole documents; deterministic: files in given order,
    shards sorted).
    """
    import io

    import pyarrow.parquet as pq

    seen = 0
    for path in paths:
        stripped = fs._strip_protocol(path)
        if fs.isdir(stripped):
            names = shards.list_shards(fs, path)
            if not names:
                raise ValueError(f"{path}: a folder with no complete shards (_manifests/part-*.manifest.json)")
            tables = (shards.read_verified(fs, path, name, columns=["text"]) for name in names)
        elif path.endswith(".parquet"):
            tables = [pq.read_table(io.BytesIO(shards.read_bytes(fs, path)), columns=["text"])]
        else:
            tables = None
            text = shards.read_bytes(fs, path).decode("utf-8", errors="replace")
            for chunk in iter_text_chunks(text):
                yield chunk
                seen += len(chunk.encode("utf-8"))
                if max_bytes is not None and seen >= max_bytes:
                    return
        for table in tables or ():
            for text in table.column("text").to_pylist():
                if not text:
                    continue
                yield text
                seen += len(text.encode("utf-8"))
                if max_bytes is not None and seen >= max_bytes:
                    return
