"""Text extraction on gold article pages (scrapinghub benchmark metric): F1, precision, recall, pages/s.

Reads ``ID.html`` + ``ID.json`` (``articleBody``) pairs from a folder. ``--method stage`` runs the
pipeline's extractor as the pipeline runs it (helper process, time limit, pre-pass);
``--method trafilatura`` runs plain ``trafilatura.extract(favor_precision=True)`` in this process
for comparison. Pages/s counts the extraction only (one core), not reading the files, after one
untimed warm-up page for every method.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Callable

from pipeline_lib.evaluate.metrics import extraction_scores, shingle_match

METHODS = ("stage", "inprocess", "trafilatura")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="folder of ID.html + ID.json pairs (e.g. ../shared/data/extraction)")
    parser.add_argument("--method", choices=METHODS, default="stage",
                        help="stage: the pipeline's ExtractStage (default); inprocess: same code without the "
                             "helper process; trafilatura: plain trafilatura.extract(favor_precision=True)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N pages (sorted by id)")
    parser.add_argument("--no-prune", action="store_true", help="stage/inprocess: skip the selectolax pre-pass")


def load_pages(folder: str | Path, limit: int | None = None) -> list[dict]:
    """[{id, url, html, gold}] sorted by id; pages without a gold JSON are skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SystemExit(f"not a folder: {folder}")
    pages = []
    for html_path in sorted(folder.glob("*.html")):
        gold_path = html_path.with_suffix(".json")
        if not gold_path.is_file():
            continue
        gold = json.loads(gold_path.read_text(encoding="utf-8"))
        pages.append({"id": html_path.stem, "url": gold.get("url"),
                      "html": html_path.read_bytes().decode("utf-8", errors="replace"),
                      "gold": gold.get("articleBody") or ""})
    return pages[:limit] if limit else pages


def plain_trafilatura(html: str, url: str | None) -> str:
    import trafilatura

    return trafilatura.extract(html, url=url, favor_precision=True) or ""


def make_extractor(method: str, prune: bool = True) -> tuple[Callable[[str, str | None], str], Callable[[], None]]:
    """(extract(html, url) -> text, close())."""
    if method == "trafilatura":
        return plain_trafilatura, lambda: None
    from pipeline_lib.config import parse_config
    from pipeline_lib.extract import ExtractOptions, ExtractStage, extract_page

    cfg = parse_config({"extract": {"prune_html": prune}})
    if method == "inprocess":
        opts = ExtractOptions.from_config(cfg.extract)
        return (lambda html, url: extract_page(html, url, opts).get("text") or ""), lambda: None
    stage = ExtractStage(cfg)
    return (lambda html, url: stage.extract_one(html, url).get("text") or ""), stage.close


def run(pages: list[dict], method: str, prune: bool = True) -> tuple[dict, list[dict]]:
    extract, close = make_extractor(method, prune)
    texts = []
    try:
        if pages:  # one untimed page first: imports, lazy tables and the helper's start are not per-page costs
            extract(pages[0]["html"], pages[0]["url"])
        t0 = time.perf_counter()
        for page in pages:
            texts.append(extract(page["html"], page["url"]))
        seconds = time.perf_counter() - t0
    finally:
        close()
    metrics = extraction_scores([shingle_match(p["gold"], t) for p, t in zip(pages, texts)])
    metrics.update(pages=len(pages), seconds=round(seconds, 3),
                   pages_per_second=len(pages) / seconds if seconds else 0.0, method=method)
    return metrics, [{"id": p["id"], "text": t} for p, t in zip(pages, texts)]


def evaluate(args: argparse.Namespace) -> tuple[dict, list[dict]]:
    return run(load_pages(args.path, args.limit), args.method, prune=not args.no_prune)
