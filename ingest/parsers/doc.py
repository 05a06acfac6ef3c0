"""Legacy Word 97-2003 (.doc): the main text read from the document's piece table.

A .doc is an OLE compound file. Its text lives in the WordDocument stream as "pieces"
(8-bit cp1252 or UTF-16), listed in the piece table (CLX) of the table stream; the
File Information Block (FIB) says where. Layout spec: [MS-DOC] 2.5 (FIB), 2.9.38 (Clx).
Pure Python on purpose: antiword refuses small files and would add a system package.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

from ingest.parsers.base import ParsedDocument, ParseError, TextUnit

_WORD_MAGIC = 0xA5EC
_WORD97_NFIB = 0xC0  # Word 6/95 files (nFib 0x65-0x68) use an older, different layout
_FCCLX_INDEX = 33  # fcClx is the 34th fc/lcb pair of FibRgFcLcb97
_CONVERT_HINT = "convert it to .docx"
# Field codes sit between 0x13 (begin) and 0x14 (separator); the result follows until 0x15.
_FIELD_CODE_RE = re.compile("\x13[^\x13\x14\x15]*\x14")
_FIELD_NO_RESULT_RE = re.compile("\x13[^\x13\x14\x15]*\x15")
_SPECIAL = str.maketrans({"\r": "\n", "\x07": "\t", "\x0b": "\n", "\x0c": "\n\n", "\x15": None, "\x1e": "-", "\x1f": None})


def parse_doc(path: Path) -> ParsedDocument:
    import olefile

    if not olefile.isOleFile(str(path)):
        raise ParseError(f"the file is not a legacy Word document (damaged or a different format); {_CONVERT_HINT}")
    try:
        with olefile.OleFileIO(str(path)) as ole:
            word = ole.openstream("WordDocument").read()
            flags = struct.unpack_from("<H", word, 0x0A)[0] if len(word) > 0x0C else 0
            magic, n_fib = struct.unpack_from("<HH", word, 0) if len(word) > 4 else (0, 0)
            if magic != _WORD_MAGIC or n_fib < _WORD97_NFIB:
                raise ParseError(f"the .doc file is from a Word version older than 97; {_CONVERT_HINT}")
            if flags & 0x0100:
                raise ParseError("the .doc file is password protected")
            table_name = "1Table" if flags & 0x0200 else "0Table"
            table = ole.openstream(table_name).read()
            title = (ole.get_metadata().title or b"").decode("cp1252", errors="replace") or None
    except ParseError:
        raise
    except Exception as exc:
        raise ParseError(f"the .doc file is damaged and cannot be read; {_CONVERT_HINT}") from exc
    try:
        text = _main_text(word, table)
    except (struct.error, IndexError, ValueError) as exc:
        raise ParseError(f"the .doc file's text table is damaged; {_CONVERT_HINT}") from exc
    return ParsedDocument([TextUnit(text)], "doc", title=title)


def _main_text(word: bytes, table: bytes) -> str:
    # FIB: 32-byte base, then csw + rgW, cslw + rgLw (ccpText is its 4th long), cbRgFcLcb + pairs.
    offset = 32
    csw = struct.unpack_from("<H", word, offset)[0]
    offset += 2 + csw * 2
    cslw = struct.unpack_from("<H", word, offset)[0]
    ccp_text = struct.unpack_from("<i", word, offset + 2 + 3 * 4)[0]
    offset += 2 + cslw * 4
    offset += 2  # cbRgFcLcb
    fc_clx, lcb_clx = struct.unpack_from("<II", word, offset + _FCCLX_INDEX * 8)
    clx = table[fc_clx : fc_clx + lcb_clx]
    pieces = _piece_table(clx)
    out: list[str] = []
    for cp_start, cp_end, fc, compressed in pieces:
        if cp_start >= ccp_text:  # past the main document (footnotes, headers follow)
            break
        count = min(cp_end, ccp_text) - cp_start
        if compressed:
            out.append(word[fc : fc + count].decode("cp1252", errors="replace"))
        else:
            out.append(word[fc : fc + 2 * count].decode("utf-16-le", errors="replace"))
    text = "".join(out)
    text = _FIELD_CODE_RE.sub("", text)
    text = _FIELD_NO_RESULT_RE.sub("", text)
    return text.translate(_SPECIAL)


def _piece_table(clx: bytes) -> list[tuple[int, int, int, bool]]:
    """(cp_start, cp_end, byte offset, 8-bit?) for each piece of text."""
    i = 0
    while i < len(clx) and clx[i] == 0x01:  # Prc blocks (formatting) come first; skip them
        i += 3 + struct.unpack_from("<h", clx, i + 1)[0]
    if i >= len(clx) or clx[i] != 0x02:
        raise ValueError("no piece table")
    lcb = struct.unpack_from("<I", clx, i + 1)[0]
    plc = clx[i + 5 : i + 5 + lcb]
    n = (lcb - 4) // 12
    cps = struct.unpack_from(f"<{n + 1}I", plc, 0)
    pieces = []
    for k in range(n):
        fc_raw = struct.unpack_from("<I", plc, 4 * (n + 1) + 8 * k + 2)[0]
        compressed = bool(fc_raw & 0x40000000)
        fc = fc_raw & 0x3FFFFFFF
        pieces.append((cps[k], cps[k + 1], fc // 2 if compressed else fc, compressed))
    return pieces
