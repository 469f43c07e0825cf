"""Text encodings: UTF-8 (with or without BOM), GB18030/GBK, Big5 and UTF-16, found or forced.

Chinese Excel saves CSV in GBK by default and Windows tools write UTF-16, so "not UTF-8" is the
normal case, not an error. Detection order: a byte-order mark; strict UTF-8; UTF-16 without a
BOM (NUL bytes in every other position); otherwise charset-normalizer, limited to the encodings
Chinese transcripts come in (it is guessing, and the smaller its choice the better it guesses).
GBK and GB2312 are read as GB18030, their superset. ``--encoding`` (``ingest.encoding``) skips
detection; the manifest records what was used for each file.
"""

from __future__ import annotations

import codecs

from serve.ingest.records import FileError

_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_CANDIDATES = ["gb18030", "big5", "utf_16_le", "utf_16_be"]
_GB_FAMILY = {"gb2312", "gbk", "gb18030", "hz", "cp936"}


def _utf8_prefix_ok(head: bytes) -> bool:
    """True when ``head`` is valid UTF-8, allowing a character cut off at the end."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _utf16_without_bom(head: bytes) -> str | None:
    sample = head[:4096]
    if len(sample) < 4:
        return None
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    half = len(sample) // 2
    if odd > 0.3 * half and even < 0.05 * half:
        return "utf-16-le"
    if even > 0.3 * half and odd < 0.05 * half:
        return "utf-16-be"
    return None


def sniff_encoding(head: bytes, forced: str = "auto") -> str:
    """The codec to read a file with, from its first bytes (or ``forced``, when not ``auto``)."""
    if forced != "auto":
        return forced
    for bom, codec in _BOMS:
        if head.startswith(bom):
            return codec
    if _utf8_prefix_ok(head):
        return "utf-8"
    wide = _utf16_without_bom(head)
    if wide:
        return wide
    from charset_normalizer import from_bytes

    best = from_bytes(head, cp_isolation=_CANDIDATES).best()
    if best is None:
        return "gb18030"  # the last resort for Chinese text; a strict decode below still checks it
    name = best.encoding.lower()
    return "gb18030" if name in _GB_FAMILY else name


def decode(data: bytes, codec: str) -> str:
    """Strictly decode a whole file; a bad byte abandons the file, naming its line and the codec."""
    try:
        return data.decode(codec)
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        hint = "" if codec != "utf-8" else "; give --encoding if the file is in another encoding"
        raise FileError(f"not {codec} text: {e.reason} at byte {e.start}{hint}", f"line {line}") from None


def decode_line(raw: bytes, codec: str, first: bool) -> str:
    """One line of a line-oriented file in a byte-oriented codec (raises ``UnicodeDecodeError``)."""
    text = raw.decode(codec)
    return text.lstrip("\ufeff") if first else text


def is_line_safe(codec: str) -> bool:
    """Whether a newline byte is always a newline (false for UTF-16/32, whose lines must be decoded whole)."""
    return not codecs.lookup(codec).name.startswith(("utf-16", "utf-32"))
