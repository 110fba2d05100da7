"""Turning HTML bytes into correct Unicode: BOM, then the HTTP header, then ``<meta>``, then detection.

Labels are mapped the way browsers map them (WHATWG Encoding): a page that says ``iso-8859-1``
is really windows-1252, ``shift_jis`` is really cp932, so curly quotes and NEC symbols survive.
"""

from __future__ import annotations

import codecs
import re

_ALIASES = {
    "iso-8859-1": "cp1252", "iso8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252",
    "l1": "cp1252", "us-ascii": "cp1252", "ascii": "cp1252", "windows-1252": "cp1252",
    "shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932", "x-sjis": "cp932", "ms_kanji": "cp932",
    "windows-31j": "cp932", "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030",
    "euc-kr": "cp949", "ks_c_5601-1987": "cp949", "iso-8859-9": "cp1254", "tis-620": "cp874",
    "x-euc-jp": "euc-jp", "utf8": "utf-8", "unicode-1-1-utf-8": "utf-8",
}
_BOMS = [(codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")]
_COMMENT = re.compile(rb"<!--.*?-->", re.S)
_META_TAG = re.compile(rb"<meta[\s/][^>]*>", re.I)
_ATTRIBUTE = re.compile(rb"""([^\s/>"'=]+)\s*=\s*("[^"]*"|'[^']*'|[^\s>]+)""")
_CONTENT_CHARSET = re.compile(rb"""charset\s*=\s*["']?\s*([A-Za-z0-9_.:+-]{1,40})""", re.I)
_ASCII_BYTES = bytes(range(128))
_HEADER_CHARSET = re.compile(r"""charset\s*=\s*["']?\s*([A-Za-z0-9_.:+-]{1,40})""", re.I)


# windows-1252 leaves 0x81, 0x8D, 0x8F, 0x90 and 0x9D undefined; Python's codec rejects them, WHATWG
# decodes each to the C1 control of the same number. Without this, one such byte made a declared
# Latin-1 page fail its declaration and fall to detection, which garbled the whole page.
def _c1_controls(err: UnicodeDecodeError) -> tuple[str, int]:
    return err.object[err.start:err.end].decode("latin-1"), err.end


codecs.register_error("c2m-whatwg-c1", _c1_controls)
DECODE_ERRORS = {"cp1252": "c2m-whatwg-c1"}


def decode_as(body: bytes, codec: str) -> str:
    """``body.decode(codec)`` as a browser does it (see _c1_controls); UnicodeDecodeError otherwise."""
    return body.decode(codec, DECODE_ERRORS.get(codec, "strict"))


def codec_for(label: str | None) -> str | None:
    """A Python codec name for a charset label, or None if the label is unknown."""
    if not label:
        return None
    label = label.strip().lower()
    label = _ALIASES.get(label, label)
    try:
        info = codecs.lookup(label)
    except LookupError:
        return None
    if not getattr(info, "_is_text_encoding", True):  # hex, base64, zlib...: bytes-to-bytes, not a charset
        return None
    name = info.name
    # utf-16 declared in a <meta> of an ASCII-compatible page is a lie (WHATWG says: use utf-8).
    return name


def charset_from_content_type(content_type: str | None) -> str | None:
    m = _HEADER_CHARSET.search(content_type or "")
    return m.group(1) if m else None


def charset_from_meta(head: bytes) -> str | None:
    """The charset a ``<meta>`` declares, as a browser's prescan finds it: a ``charset`` attribute,
    or ``http-equiv="content-type"`` with a charset in its ``content``; commented-out tags and a
    "charset=" inside some other meta's text do not count."""
    if b"<!--" in head:
        head = _COMMENT.sub(b"", head).split(b"<!--", 1)[0]  # an unclosed comment runs to the end
    for tag in _META_TAG.finditer(head):
        attrs = {k.lower(): v.strip(b"\"'") for k, v in _ATTRIBUTE.findall(tag.group(0))}
        label = attrs.get(b"charset")
        if label is None and attrs.get(b"http-equiv", b"").strip().lower() == b"content-type":
            m = _CONTENT_CHARSET.search(attrs.get(b"content", b""))
            label = m.group(1) if m else None
        if label and label.strip():
            return label.strip()[:40].decode("ascii", "replace")
    return None


def decode_html(body: bytes, content_type: str | None = None) -> tuple[str, str]:
    """(text, codec used). Never raises: the last resort decodes with replacement characters."""
    for bom, name in _BOMS:
        if body.startswith(bom):
            return body[len(bom):].decode(name, errors="replace"), name
    declared: list[str] = []
    # Lazily: the <meta> scan only runs when the header names no charset or a wrong one.
    for source in (lambda: charset_from_content_type(content_type), lambda: charset_from_meta(body[:4096])):
        name = codec_for(source())
        if name and not name.startswith("utf-16"):
            declared.append(name)
            try:
                return body.decode(name), name
            except UnicodeDecodeError:
                continue  # the declaration is wrong; try the next source of truth
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    # A declared windows-1252 that failed only on its five undefined bytes is still the truth (a
    # UTF-8 page wrongly labelled Latin-1 has been read as UTF-8 above, before this lenient retry).
    for name in declared:
        if name in DECODE_ERRORS:
            return decode_as(body, name), name
    # UTF-8 with a few bad bytes (a stray Latin-1 byte, a character cut short) is still UTF-8, as a
    # browser reads it: detection would pick a codec that garbles every other character of the page.
    text = body.decode("utf-8", errors="replace")
    bad = text.count("\ufffd") - body.count(b"\xef\xbf\xbd")
    # "replace" keeps ASCII bytes one to one: the rest of the text is the non-ASCII characters.
    non_ascii = len(text) - (len(body) - len(body.translate(None, _ASCII_BYTES)))
    if bad <= non_ascii - bad:
        return text, "utf-8"
    guess = _detect(body)
    if guess:
        try:
            return decode_as(body, guess), guess
        except UnicodeDecodeError:
            pass
    fallback = (declared[0] if declared else None) or guess or "cp1252"
    return body.decode(fallback, errors="replace"), fallback


def _detect(body: bytes) -> str | None:
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # pragma: no cover - requests always brings it
        return None
    best = from_bytes(body[:200_000]).best()
    return codec_for(best.encoding) if best is not None else None
