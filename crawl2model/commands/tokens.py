"""``crawl2model tokens TEXT`` shows how a vocabulary cuts text; ``train-tokenizer`` learns one.

    crawl2model tokens "I love machine learning!" --encoding cl100k_base --json
    crawl2model tokens "naïve café 1234567" --compare gpt2 cl100k_base o200k_base
    crawl2model train-tokenizer --input ../shared/data/corpus/tinyshakespeare_input.txt --vocab-size 2048 --out tok/
    crawl2model tokens "To be, or not to be" --tokenizer tok/
"""

from __future__ import annotations

import argparse
import json
import os
import sys

# Background colours cycled over pieces, like the tiktokenizer web tool (ANSI 256-colour pastels).
_COLOURS = [153, 187, 223, 194, 225, 189, 230, 152]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tokens", help="show the tokens of a text under one or several vocabularies")
    p.add_argument("text", metavar="TEXT", help="the text ('-' reads stdin)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--encoding", metavar="NAME", help="tiktoken encoding or model name (default gpt2)")
    which.add_argument("--tokenizer", metavar="DIR", help="a folder saved by train-tokenizer")
    p.add_argument("--compare", nargs="+", metavar="NAME", default=[],
                   help="also show the text under these encodings (names or tokenizer folders)")
    p.add_argument("--json", action="store_true",
                   help='print {"encoding", "n_vocab", "ids", "pieces"} (a list of them with --compare)')
    p.set_defaults(func=_tokens)

    t = sub.add_parser("train-tokenizer", help="learn a byte-level BPE that loads as a tiktoken encoding")
    t.add_argument("--input", nargs="+", required=True, metavar="PATH",
                   help="text files, Parquet files with a text column, or stage folders of shards (e.g. RUN/06_pii)")
    t.add_argument("--vocab-size", type=int, required=True, metavar="N", help="total ids, special tokens included")
    t.add_argument("--out", required=True, metavar="DIR", help="folder to write (ranks.tiktoken + meta.json)")
    t.add_argument("--name", help="encoding name recorded in the folder (default: the folder name)")
    t.add_argument("--min-frequency", type=int, default=2, help="never merge a pair seen fewer times (default 2)")
    t.add_argument("--pattern", choices=["cl100k", "gpt2"], default="cl100k", help="pre-split regex (default cl100k)")
    t.add_argument("--special-tokens", nargs="+", default=["<|endoftext|>"], metavar="TOKEN",
                   help="special tokens; <|endoftext|> is always included, first")
    t.add_argument("--max-bytes", type=int, default=None, help="train on at most this much text")
    t.add_argument("--json", action="store_true", help="print the saved meta as JSON")
    t.set_defaults(func=_train)


def _load(spec: str):
    from pipeline_lib.tokenization import load_encoding

    return load_encoding(spec)


def _piece(enc, token: int) -> str:
    # A token can hold part of a multi-byte character; show those bytes as \xNN escapes.
    return enc.decode_single_token_bytes(token).decode("utf-8", errors="backslashreplace")


def describe(enc, text: str) -> dict:
    ids = enc.encode_ordinary(text)
    return {"encoding": enc.name, "n_vocab": enc.n_vocab, "ids": ids, "pieces": [_piece(enc, i) for i in ids]}


def _coloured(pieces: list[str], ids: list[int], colour: bool) -> tuple[str, str]:
    if not colour:
        return "|".join(pieces), " ".join(str(i) for i in ids)
    text, numbers = [], []
    for k, (piece, tid) in enumerate(zip(pieces, ids)):
        bg = _COLOURS[k % len(_COLOURS)]
        shown = piece.replace("\n", "\\n").replace("\t", "\\t")
        text.append(f"\x1b[48;5;{bg}m\x1b[30m{shown}\x1b[0m")
        numbers.append(f"\x1b[48;5;{bg}m\x1b[30m{tid}\x1b[0m")
    return "".join(text), " ".join(numbers)


def _tokens(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.text == "-" else args.text
    specs = []
    if args.tokenizer or args.encoding or not args.compare:
        specs.append(args.tokenizer or args.encoding or "gpt2")
    specs += [s for s in args.compare if s not in specs]
    results = [describe(_load(spec), text) for spec in specs]
    if args.json:
        json.dump(results[0] if len(results) == 1 else results, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    colour = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    n_bytes = len(text.encode("utf-8"))
    width = max(len(r["encoding"]) for r in results)
    for r in results:
        pieces, ids = _coloured(r["pieces"], r["ids"], colour)
        n = len(r["ids"])
        ratio = f"{n_bytes / n:.2f} bytes/token" if n else "no tokens"
        print(f"{r['encoding']:<{width}}  {n} tokens  n_vocab {r['n_vocab']}  {ratio}")
        print(f"{'':<{width}}  {pieces}")
        print(f"{'':<{width}}  {ids}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from pipeline_lib import bpe_train, shards

    fs = shards.filesystem(args.out)
    texts = bpe_train.iter_training_texts(fs, args.input, max_bytes=args.max_bytes)
    ranks, specials = bpe_train.train_bpe(texts, args.vocab_size, min_frequency=args.min_frequency,
                                          pattern=args.pattern, special_tokens=args.special_tokens)
    name = args.name or os.path.basename(os.path.normpath(args.out)) or "bpe"
    meta = bpe_train.save_tokenizer(fs, args.out, name, ranks, specials, args.pattern,
                                    trained_on={"inputs": args.input, "min_frequency": args.min_frequency,
                                                "max_bytes": args.max_bytes, "vocab_size": args.vocab_size})
    if args.json:
        json.dump(meta, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        print(f"saved {meta['name']!r} to {args.out}: n_vocab {meta['n_vocab']} "
              f"({len(ranks)} merges+bytes, {len(specials)} special), ranks sha256 {meta['ranks_sha256'][:12]}")
    return 0
