"""A corpus of hostile documents and a driver that walks them through every per-document stage.

The driver calls each stage's ``process`` in pipeline order (urlfilter -> extract -> langid ->
quality -> dedup -> pii -> tokens), exactly as the runner would, and keeps a ledger: every input id
must end either in the final kept table or in exactly one stage's rejected rows with a snake_case
reason. Dedup is driven through its plain functions (signatures, clustering, drop rows).
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline_lib.config import PipelineConfig, load_config
from pipeline_lib.crawl.encoding import decode_html
from pipeline_lib.dedup.steps import cluster_table, drop_rows, signature_table
from pipeline_lib.schema import PAGE_SCHEMA, REJECT_REASON, doc_id
from pipeline_lib.stage import build_stage, check_result

REPO = Path(__file__).resolve().parents[2]
REASON_RE = re.compile(r"^[a-z][a-z0-9_]*$")
PAGE_STAGES = ["urlfilter", "extract", "langid", "quality"]
DOC_STAGES_AFTER_DEDUP = ["pii", "tokens"]
FETCHED_AT = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
ENGLISH = ("The river rose slowly through the night, and by morning the farmers had moved their animals to the "
           "higher fields. Nobody in the village could remember a flood like it, although the older people said "
           "their parents had told stories of water reaching the church steps. ")


def hostile_config(**overrides) -> PipelineConfig:
    """configs/small.yaml with a pretrained tokenizer (no per-run BPE training needed here)."""
    merged = {"tokenize": {"source": "pretrained", "encoding": "gpt2"}}
    merged.update(overrides)
    return load_config(REPO / "configs" / "small.yaml", overrides=merged)


def _nested(depth: int) -> bytes:
    return (b"<div>" * depth) + b"deep " * 10 + (b"</div>" * depth)


def real_pages(extraction_dir: Path, limit: int) -> list[tuple[str, bytes]]:
    """(url, raw HTML bytes) of real article pages from ../shared/data/extraction, sorted by name."""
    pages = []
    for html_path in sorted(extraction_dir.glob("*.html"))[:limit]:
        meta = json.loads(html_path.with_suffix(".json").read_text())
        pages.append((meta.get("url") or f"https://example.org/{html_path.stem}", html_path.read_bytes()))
    return pages


def hostile_bodies(big_page_mb: int = 0, controls: list[bytes] = ()) -> dict[str, tuple[bytes, str]]:
    """name -> (raw response body, Content-Type). The bytes are what a server could send.

    ``controls`` (real article pages) become ``control_N``: the chain must still keep real text.
    """
    rng = random.Random(1234)
    para = f"<p>{ENGLISH * 3}</p>".encode()
    bodies: dict[str, tuple[bytes, str]] = {
        "empty": (b"", "text/html"),
        "whitespace_only": (b"   \n\t\r\n   \x0b\x0c  ", "text/html; charset=utf-8"),
        "unicode_whitespace_only": ("\u3000\u00a0\u2003\u200b\ufeff\n".encode(), "text/html; charset=utf-8"),
        "markup_only": (b"<html><head><style>p{}</style><script>var a=1;</script></head><body><div><span></span>"
                        b"<br/><hr/><img src=x></div><table><tr><td></td></tr></table></body></html>",
                        "text/html"),
        "comment_only": (b"<!-- " + ENGLISH.encode() + b" -->", "text/html"),
        "malformed": (b"<html><body><p>Unclosed <b>bold <i>italic</p></b> <div <<>> </table></tr>" + para
                      + b"<p attr='unterminated>" + para + b"</html></html></body>", "text/html"),
        "unterminated_script": (b"<html><body>" + para + b"<script>while(1){" + ENGLISH.encode() * 20, "text/html"),
        "deeply_nested_divs": (_nested(20_000), "text/html"),
        "deeply_nested_mixed": ((b"<div><p><span><b><i><ul><li><table><tr><td>" * 3000) + para, "text/html"),
        "entity_flood": (b"<p>" + b"&amp;&lt;&#0;&#xD800;&#x110000;&bogus;" * 20_000 + b"</p>", "text/html"),
        "xml_entity_expansion": (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 '
                                 b'"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><html><body><p>&lol2;</p>'
                                 + para + b"</body></html>", "application/xhtml+xml"),
        "invalid_utf8": (b"<html><body><p>caf\xe9 \xff\xfe\xfd bad \xc3\x28 seq \xed\xa0\x80 surrogate</p>" + para
                         + b"\x80\x81\x82</body></html>", "text/html; charset=utf-8"),
        "nul_bytes": (b"<html><body><p>hello\x00world\x00</p>" + para.replace(b" ", b"\x00 ") + b"</body></html>",
                      "text/html"),
        "control_chars": (b"<p>" + bytes(range(1, 32)) * 50 + para + b"\x1b[31m\x7f</p>", "text/html"),
        "mixed_encodings": (b"<html><head><meta charset='shift_jis'></head><body><p>" + "caf\u00e9 na\u00efve".encode()
                            + "r\u00e9sum\u00e9".encode("latin-1") + "\u65e5\u672c\u8a9e".encode("shift_jis")
                            + "\u4e2d\u6587".encode("gb2312") + "\u0420\u0443\u0441".encode("koi8_r") + b"</p>"
                            + para + b"</body></html>", "text/html; charset=iso-8859-1"),
        "utf16_bom": (("\ufeff<html><body><p>" + ENGLISH * 4 + "</p></body></html>").encode("utf-16-le"), "text/html"),
        "lying_charset": (("<p>" + "\u4f60\u597d\u4e16\u754c" * 200 + "</p>").encode("utf-8"), "text/html; charset=ascii"),
        "binary_random": (rng.randbytes(200_000), "text/html"),
        "binary_png": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + rng.randbytes(50_000), "image/png"),
        "binary_gzip": (b"\x1f\x8b\x08\x00" + rng.randbytes(30_000), "text/html"),
        "binary_pdf": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>stream\n" + rng.randbytes(30_000) + b"\nendstream",
                       "application/pdf"),
        "one_huge_word": (b"<p>" + b"a" * 2_000_000 + b"</p>", "text/html"),
        "one_huge_line_of_words": (b"<p>" + (ENGLISH.encode() * 3000).replace(b". ", b", ") + b"</p>", "text/html"),
        "rtl_and_zero_width": (("<p>" + "\u202e\u200d\u2066" * 500 + ENGLISH * 3 + "</p>").encode(), "text/html"),
        "emoji_and_astral": (("<p>" + "\U0001f600\U0001d11e\U00010348 " * 3000 + "</p>").encode(), "text/html"),
        "pii_dense": (("<p>" + "Mail jane.doe@example.com or call +1 (555) 010-9999, card 4111 1111 1111 1111, "
                              "IP 8.8.8.8. " * 300 + ENGLISH * 3 + "</p>").encode(), "text/html"),
    }
    for i, page in enumerate(controls):
        bodies[f"control_{i}"] = (page, "text/html; charset=utf-8")
    if big_page_mb:
        repeat = big_page_mb * 1024 * 1024 // len(para) + 1
        bodies[f"page_{big_page_mb}mb"] = (b"<html><body>" + para * repeat + b"</body></html>", "text/html")
    return bodies


HOSTILE_URLS = ["", "not a url", "http://", "javascript:alert(1)", "http://exa mple.com/\x00x", "http://[::1/",
                "http://" + "a" * 5000 + ".com/", "http://xn--nxasmq6b.com/\u00e9?q=%ff%fe", "ftp://example.com/a",
                "http://127.0.0.1:99999/", "https://example.com/" + "%00" * 100]


def page_table(bodies: dict[str, tuple[bytes, str]], urls: list[str] | None = None) -> pa.Table:
    """Page rows per PAGE_SCHEMA, the HTML decoded the way the crawler decodes a response body."""
    rows = {f.name: [] for f in PAGE_SCHEMA}
    items = list(bodies.items())
    urls = urls or []
    for i, (name, (body, ctype)) in enumerate(items):
        html, _codec = decode_html(body, ctype)
        url = f"https://news.example.org/{name}"
        rows["id"].append(doc_id(url))
        rows["url"].append(url)
        rows["final_url"].append(url)
        rows["status"].append(200)
        rows["content_type"].append(ctype)
        rows["html"].append(html)
        rows["fetched_at"].append(FETCHED_AT + dt.timedelta(seconds=i))
        rows["depth"].append(1)
        rows["source"].append("hostile")
        rows["headers"].append(json.dumps({"content-type": ctype}))
    for j, url in enumerate(urls):
        rows["id"].append(doc_id("hostile-url", str(j)))
        rows["url"].append(url)
        rows["final_url"].append(url)
        rows["status"].append(200)
        rows["content_type"].append("text/html")
        rows["html"].append(f"<p>{ENGLISH}</p>")
        rows["fetched_at"].append(FETCHED_AT)
        rows["depth"].append(0)
        rows["source"].append("hostile")
        rows["headers"].append("{}")
    return pa.Table.from_pydict(rows, schema=PAGE_SCHEMA)


def doc_table(texts: list[str | None], fetched: list[dt.datetime] | None = None) -> pa.Table:
    """Document rows (after extraction) straight from texts, for stages that start at 03_langid."""
    n = len(texts)
    ids = [doc_id("hostile-doc", str(i)) for i in range(n)]
    return pa.table({
        "id": pa.array(ids, pa.string()),
        "url": pa.array([f"https://docs.example.org/{i}" for i in range(n)], pa.string()),
        "text": pa.array(texts, pa.string()),
        "fetched_at": pa.array(fetched or [FETCHED_AT] * n, pa.timestamp("us", tz="UTC")),
        "source": pa.array(["hostile"] * n, pa.string()),
    })


@dataclass
class Ledger:
    """Where every input document ended: ``kept`` or (stage, reason); and per-stage seconds."""

    ids: list[str]
    fate: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    final: pa.Table | None = None

    def reject(self, stage: str, rejected: pa.Table) -> None:
        if rejected.num_rows == 0:
            return
        for doc, reason in zip(rejected.column("id").to_pylist(), rejected.column(REJECT_REASON).to_pylist()):
            assert doc not in self.fate, f"{doc} rejected twice ({self.fate[doc]} and {stage}:{reason})"
            assert reason and REASON_RE.match(reason), f"{stage}: bad reject_reason {reason!r} for {doc}"
            self.fate[doc] = f"{stage}:{reason}"

    def unaccounted(self) -> list[str]:
        return [d for d in self.ids if d not in self.fate]


def run_chain(cfg: PipelineConfig, table: pa.Table, start: str = "urlfilter") -> Ledger:
    """Every per-document stage from ``start`` on, in pipeline order, plus dedup's functions."""
    ledger = Ledger(table.column("id").to_pylist())
    stages = PAGE_STAGES[PAGE_STAGES.index(start):] if start in PAGE_STAGES else []
    for key in stages:
        table = _run_stage(cfg, key, table, ledger)
    t0 = time.perf_counter()
    sigs = signature_table(table, cfg.dedup)
    roots = cluster_table(sigs, cfg.dedup)
    dropped, drops = drop_rows(sigs, roots)
    ledger.seconds["dedup"] = time.perf_counter() - t0
    ledger.reject("dedup", drops)
    table = table.filter(pa.array(~np.asarray(dropped, dtype=bool)))
    for key in DOC_STAGES_AFTER_DEDUP:
        table = _run_stage(cfg, key, table, ledger)
    for doc in table.column("id").to_pylist():
        assert doc not in ledger.fate, f"{doc} both kept and {ledger.fate[doc]}"
        ledger.fate[doc] = "kept"
    ledger.final = table
    return ledger


def _run_stage(cfg: PipelineConfig, key: str, table: pa.Table, ledger: Ledger) -> pa.Table:
    stage = build_stage(key, cfg)
    t0 = time.perf_counter()
    result = stage.process(table)
    ledger.seconds[key] = time.perf_counter() - t0
    check_result(key, table.num_rows, result)
    ledger.reject(key, result.rejected)
    return result.kept
