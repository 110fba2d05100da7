"""Main-text extraction: page rows (HTML) in, document rows (plain text + title/date/language hint) out.

trafilatura does the extraction with FineWeb's setting (``favor_precision``, no comments, tables
kept). What is ours:

* a selectolax pre-pass (``prune_html``) that drops subtrees trafilatura would delete anyway
  (scripts, styles, svg, iframes, form controls, nav/aside/footer, inline data blobs) before lxml
  ever parses them: less to parse, fewer nodes for trafilatura's XPath prunes;
* trafilatura's fast mode first, and its full cascade (readability/justext comparison) only for the
  short or structurally odd results that cascade can change (``_needs_full_cascade``);
* title and date read with trafilatura's own metadata functions, without the author, site name,
  categories and license lookups that cost more than the text itself (``page_metadata``);
* a hard per-document time limit. Extraction runs in a helper *process* (one per thread using the
  stage) that the stage talks to over a pipe; when a page takes longer than ``timeout_seconds`` the
  helper is killed (SIGKILL cannot be ignored, not even by a C loop inside lxml) and restarted, the
  page is rejected with ``extract_timeout`` and the shard goes on. A signal-based alarm would only
  work in the main thread and cannot interrupt C code; a process works in Prefect's process pool
  workers, in plain threads and in tests alike. ``subprocess`` (not ``multiprocessing``) is used
  because daemonic pool workers may not start multiprocessing children. The helper also runs under
  an address-space limit, so a page that blows up the parser is an ``extract_error``, not an OOM kill
  of the worker.

Reasons: ``extract_bad_status`` (non-2xx page), ``extract_not_html`` (another content type),
``extract_empty`` (nothing extracted), ``extract_timeout``, ``extract_error`` (parser crash, memory).
Measured on ../shared/data/extraction: ``crawl2model eval extraction`` and ``bench/curation.py``.
"""

from __future__ import annotations

import atexit
import os
import pickle
import re
import select
import struct
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline_lib.config import ExtractConfig, PipelineConfig
from pipeline_lib.schema import TIMESTAMP
from pipeline_lib.stage import Stage, StageResult

# The columns a document row has after this stage (html and headers are dropped: they are big and
# nothing downstream reads them; the page shards keep them).
DOC_FIELDS = [
    ("id", pa.string()),
    ("url", pa.string()),
    ("text", pa.string()),
    ("title", pa.string()),
    ("date", pa.string()),
    ("language_hint", pa.string()),
    ("fetched_at", TIMESTAMP),
    ("source", pa.string()),
]
DROPPED_COLUMNS = {"html", "headers"}

# Tags whose whole subtree is never main text. Every one of them is deleted by trafilatura's own
# tree cleaning anyway (settings.MANUALLY_CLEANED), so dropping them early changes nothing but the
# work: trafilatura runs a dozen XPath prunes over the *raw* tree before its cleaning, and their cost
# grows with the node count. Kept on purpose: <form> (ASP.NET pages wrap the whole page in one;
# trafilatura keeps a form holding most of the text), <math> (trafilatura salvages formulas),
# <figure> (may hold a table), <time> and <head> (metadata: title, date). The one real difference is
# the parser: lxml then reads the HTML5 parser's (lexbor's) serialisation of the page, which repairs
# broken markup the standard way; on the 91 gold pages text, title and date come out identical.
NEVER_TEXT_TAGS = ("style", "noscript", "svg", "iframe", "object", "embed", "canvas", "select",
                   "button", "input", "textarea", "video", "audio", "map", "picture", "source", "track",
                   "applet", "fencedframe", "frame", "frameset", "dialog", "datalist", "option", "optgroup",
                   "menu", "menuitem", "marquee", "blink", "noindex", "area", "param", "progress", "output")
# The boilerplate containers trafilatura also always deletes; their removal is the big saving.
LAYOUT_TAGS = ("nav", "aside", "footer")
# A fast-mode extraction shorter than this goes through trafilatura's full cascade (readability and
# justext comparison): that cascade only ever replaces a short or structurally odd result, and
# trafilatura's own "too short" line is MIN_EXTRACTED_SIZE = 250 characters.
FULL_CASCADE_BELOW_CHARS = 500
# ... and so does one holding less than this share of the (pruned) page's words: readability can
# replace a result only with twice its text, which a page holding under twice as much cannot give.
# 0.5 would be that bound exactly; 0.2 still catches a lead paragraph kept without its <div> body
# (a sixth of the page), where 0.5 sent a quarter of the 91 gold pages through the full cascade
# for no change in F1.
FULL_CASCADE_BELOW_SHARE = 0.2
_HTML_TYPE = re.compile(r"html|xml", re.IGNORECASE)  # text/html, application/xhtml+xml
_LANG_RE = re.compile(r"^[A-Za-z]{2,3}(?=$|[-_])")


@dataclass(frozen=True)
class ExtractOptions:
    favor_precision: bool = True
    include_tables: bool = True
    include_comments: bool = False
    prune: bool = True
    fast_first: bool = True
    with_metadata: bool = True
    min_text_chars: int = 1

    @classmethod
    def from_config(cls, c: ExtractConfig) -> "ExtractOptions":
        return cls(favor_precision=c.favor_precision, include_tables=c.include_tables,
                   include_comments=c.include_comments, prune=c.prune_html, fast_first=c.fast_first,
                   min_text_chars=c.min_text_chars)


def language_from_tag(value: str | None) -> str | None:
    """'en-US' -> 'en'; anything that does not start like a language code -> None."""
    if not value:
        return None
    m = _LANG_RE.match(value.strip())
    return m.group(0).lower() if m else None


def prune_html(html: str) -> tuple[str, str | None]:
    """Drop never-text subtrees with selectolax; returns (smaller HTML, language of <html lang>)."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(html)
    root = tree.root
    lang = None
    if root is not None:
        lang = language_from_tag(root.attrs.get("lang") or root.attrs.get("xml:lang"))
    if lang is None:
        meta = tree.css_first('meta[http-equiv="content-language" i], meta[property="og:locale"]')
        if meta is not None:
            lang = language_from_tag(meta.attrs.get("content"))
    # JSON-LD stays: trafilatura and htmldate read the title and the date from it.
    for script in tree.css("script"):
        if (script.attrs.get("type") or "").strip().lower() != "application/ld+json":
            script.decompose()
    tree.strip_tags(list(NEVER_TEXT_TAGS + LAYOUT_TAGS))
    return tree.html or "", lang


def page_metadata(tree, url: str | None) -> tuple[str | None, str | None]:
    """(title, date) the way trafilatura's extract_metadata finds them, without the author, site
    name, categories, tags and license lookups it also does (they cost more than the text itself)."""
    from htmldate import find_date
    from trafilatura.metadata import examine_meta, extract_meta_json, extract_title
    from trafilatura.settings import set_date_params

    meta = examine_meta(tree)
    try:
        meta = extract_meta_json(tree, meta)
    except Exception:  # trafilatura's JSON-LD reader has bugs on odd JSON; the meta tags still count
        pass
    title = meta.title or extract_title(tree)
    title = " ".join(title.split()) if title else None  # as trafilatura trims it
    params = set_date_params(True)
    params["url"] = meta.url or url
    try:
        date = find_date(tree, **params)
    except Exception:
        date = None
    return title, date


def _run_trafilatura(tree, url: str | None, opts: ExtractOptions, fast: bool):
    import trafilatura

    return trafilatura.bare_extraction(
        tree, url=url, fast=fast, favor_precision=opts.favor_precision, include_comments=opts.include_comments,
        include_tables=opts.include_tables, include_images=False, with_metadata=False)


def _needs_full_cascade(doc, page_words: int = 0) -> bool:
    """The cases where trafilatura's readability/justext comparison may replace the result."""
    text = (doc.text if doc is not None else "") or ""
    if len(text) < FULL_CASCADE_BELOW_CHARS:
        return True
    if len(text.split()) < FULL_CASCADE_BELOW_SHARE * page_words:
        return True
    body = doc.body
    if body is None or not body.xpath(".//p//text()"):
        return True
    return len(body.findall(".//table")) > len(body.findall(".//p"))


def _date_of_unpruned(html: str, url: str | None) -> str | None:
    from htmldate import find_date
    from trafilatura.settings import set_date_params
    from trafilatura.utils import load_html

    tree = load_html(html)
    if tree is None:
        return None
    return find_date(tree, **{**set_date_params(False), "url": url})


def _words_in(tree) -> int:
    body = tree.find(".//body")
    return len((body if body is not None else tree).text_content().split())


def extract_page(html: str | None, url: str | None, opts: ExtractOptions) -> dict[str, Any]:
    """Extract one page in this process. Returns {'text','title','date','language_hint'} or {'reason'}."""
    from trafilatura.utils import load_html

    if not html or not html.strip():
        return {"reason": "extract_empty"}
    lang = None
    original = html
    if opts.prune:
        html, lang = prune_html(html)
    tree = load_html(html)
    if tree is None:
        return {"reason": "extract_empty"}
    title = date = None
    if opts.with_metadata:
        try:
            title, date = page_metadata(tree, url)
        except Exception:  # a metadata bug must not cost the page its text
            title = date = None
        if date is None and html is not original:
            # The pruned page lost where some sites keep the date (a <footer> <time>, a plain
            # <script> with "datePublished"): look at the page as it came, only for pages without
            # one, and without htmldate's extensive search (115 ms a page on undated pages, 8 ms not).
            try:
                date = _date_of_unpruned(original, url)
            except Exception:  # nor may it cost the page its title
                date = None
        lang = lang or language_from_tag(tree.get("lang"))
    # trafilatura edits the tree it is given: the full cascade needs a fresh parse, and the page's
    # word count is taken before.
    page_words = _words_in(tree) if opts.fast_first and opts.prune else 0  # unpruned, scripts would count
    doc = _run_trafilatura(tree, url, opts, fast=opts.fast_first)
    if opts.fast_first and _needs_full_cascade(doc, page_words):
        doc = _run_trafilatura(load_html(html), url, opts, fast=False)
    text = (doc.text if doc is not None else None) or ""
    if len(text.strip()) < max(1, opts.min_text_chars):
        return {"reason": "extract_empty"}
    return {"text": text, "title": title, "date": date, "language_hint": lang}


# --------------------------------------------------------------------------- the helper process
_HEADER = struct.Struct("!I")


def _send(stream, obj: Any) -> None:
    blob = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(blob)) + blob)
    stream.flush()


def _recv_exact(stream, n: int) -> bytes:
    buf = stream.read(n)
    if buf is None or len(buf) != n:
        raise EOFError("pipe closed")
    return buf


def _worker_main() -> None:  # runs in the helper process
    import signal

    # A Ctrl-C in the terminal reaches the helper too: it ends quietly (its parent decides what
    # happens to the page), not with a KeyboardInterrupt traceback per helper.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints from libraries must not corrupt the protocol
    proto_in = sys.stdin.buffer
    import logging

    logging.getLogger("trafilatura").setLevel(logging.CRITICAL)
    import trafilatura  # noqa: F401  (import before the first page: the clock is for the page)
    from selectolax.lexbor import LexborHTMLParser  # noqa: F401

    mem_mb = int(os.environ.get("C2M_EXTRACT_MEM_MB", "0"))
    if mem_mb:  # address space on top of what the imports took: a blow-up becomes a MemoryError
        import resource

        with open("/proc/self/statm") as f:
            base = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        limit = base + (mem_mb << 20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    _send(proto_out, "ready")
    while True:
        try:
            (size,) = _HEADER.unpack(_recv_exact(proto_in, _HEADER.size))
            html, url, opts = pickle.loads(_recv_exact(proto_in, size))
        except EOFError:
            return
        try:
            result = extract_page(html, url, opts)
        except MemoryError:
            result = {"reason": "extract_error", "detail": "MemoryError"}
        except Exception as e:  # a parser crash is the page's problem, not the shard's
            result = {"reason": "extract_error", "detail": f"{type(e).__name__}: {e}"[:200]}
        _send(proto_out, result)


_HELPER_GONE = object()  # what _read returns when the helper's output ends (it died), apart from a deadline


class ExtractorProcess:
    """One helper process; ``extract`` returns a result dict and never takes much over ``timeout``."""

    STARTUP_SECONDS = 60.0

    def __init__(self, memory_mb: int = 0):
        self.memory_mb = memory_mb
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    def _start(self) -> None:
        root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["C2M_EXTRACT_MEM_MB"] = str(self.memory_mb)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from pipeline_lib.extract import _worker_main; _worker_main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, bufsize=0)
        if self._read(self.STARTUP_SECONDS) != "ready":
            self.close()
            raise RuntimeError("extract helper process did not start")

    def _read(self, timeout: float) -> Any:
        """The next message, or None when the deadline passes or the helper died."""
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        chunks, need, header_done = [], _HEADER.size, False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(fd, min(need, 1 << 20))
            if not chunk:
                return _HELPER_GONE  # the helper died (killed by the kernel, crashed in C)
            chunks.append(chunk)
            need -= len(chunk)
            if need == 0:
                blob = b"".join(chunks)
                chunks = []
                if header_done:
                    return pickle.loads(blob)
                (need,) = _HEADER.unpack(blob)
                header_done = True

    def extract(self, html: str | None, url: str | None, opts: ExtractOptions, timeout: float) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        try:
            _send(self.proc.stdin, (html, url, opts))
        except (BrokenPipeError, OSError):
            self.close()
            return {"reason": "extract_error", "detail": "helper process died"}
        result = self._read(timeout)
        if result is None or result is _HELPER_GONE:
            # End of its output means it died, though the kernel may not have marked it exited yet.
            died = result is _HELPER_GONE or self.proc.poll() is not None
            self.close()
            self.restarts += 1
            return {"reason": "extract_error" if died else "extract_timeout",
                    "detail": "helper process died" if died else f"over {timeout}s"}
        return result

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            for s in (self.proc.stdin, self.proc.stdout):
                try:
                    s.close()
                except OSError:
                    pass
            self.proc = None


_ALL_HELPERS: "weakref.WeakSet[ExtractorProcess]" = weakref.WeakSet()


@atexit.register
def _close_all_helpers() -> None:
    for helper in list(_ALL_HELPERS):
        helper.close()


# --------------------------------------------------------------------------- the stage
class ExtractStage(Stage):
    name = "extract"
    section = "extract"

    def __init__(self, cfg: PipelineConfig):
        super().__init__(cfg)
        c = cfg.extract
        self.opts = ExtractOptions.from_config(c)
        self.timeout = c.timeout_seconds
        self.memory_mb = c.memory_limit_mb
        self._local = threading.local()  # one helper per thread: thread runners stay parallel

    def _helper(self) -> ExtractorProcess:
        helper = getattr(self._local, "helper", None)
        if helper is None:
            helper = ExtractorProcess(self.memory_mb)
            _ALL_HELPERS.add(helper)
            self._local.helper = helper
        return helper

    def close(self) -> None:
        """Stop this thread's helper process (it also stops by itself when this process exits)."""
        helper = getattr(self._local, "helper", None)
        if helper is not None:
            helper.close()

    def extract_one(self, html: str | None, url: str | None) -> dict:
        return self._helper().extract(html, url, self.opts, self.timeout)

    def process(self, table: pa.Table) -> StageResult:
        htmls = table.column("html").to_pylist() if "html" in table.column_names else [None] * table.num_rows
        urls = table.column("url").to_pylist()
        n = len(urls)
        statuses = table.column("status").to_pylist() if "status" in table.column_names else [None] * n
        types = table.column("content_type").to_pylist() if "content_type" in table.column_names else [None] * n
        results = []
        for html, url, status, content_type in zip(htmls, urls, statuses, types):
            if status is not None and not 200 <= status < 300:
                results.append({"reason": "extract_bad_status"})
            elif content_type and not _HTML_TYPE.search(content_type):
                results.append({"reason": "extract_not_html", "detail": content_type[:100]})
            else:
                results.append(self.extract_one(html, url))
        return build_result(table, results)


def build_result(table: pa.Table, results: list[dict]) -> StageResult:
    """Document rows for kept pages; the page rows (minus HTML) plus a reason for rejected ones."""
    reasons = [r.get("reason") for r in results]
    base = table.drop_columns([c for c in table.column_names if c in DROPPED_COLUMNS])
    cols = {name: base.column(name) for name in base.column_names}
    for field, typ in DOC_FIELDS[2:6]:  # text, title, date, language_hint
        cols[field] = pa.array([r.get(field) for r in results], typ)
    out = pa.table(cols)
    # Put the documented columns first, keep the rest (depth, final_url, ...) after them.
    ordered = [f for f, _ in DOC_FIELDS if f in out.column_names]
    out = out.select(ordered + [c for c in out.column_names if c not in ordered])
    result = StageResult.split(out, reasons, rejected_extra={"reject_detail": [r.get("detail") for r in results]})
    counters = {"extract.timeouts": sum(r == "extract_timeout" for r in reasons),
                "extract.errors": sum(r == "extract_error" for r in reasons),
                "extract.chars": sum(len(r.get("text") or "") for r in results)}
    # Rejected rows need no extraction columns: the text is empty by definition.
    rejected = result.rejected.drop_columns(["text", "title", "date", "language_hint"])
    return StageResult(result.kept, rejected, counters)
