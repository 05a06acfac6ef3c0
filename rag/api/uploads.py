"""Receiving uploaded files: a streaming multipart reader that writes straight to disk
under the data folder (no copies in /tmp, no whole files in memory), and safe names.

Files land in ``<data_dir>/uploads/<id>/`` while the request arrives and are moved into
``<documents_dir>/<groups>/<name>`` when their ingestion job starts. The groups folder
keeps uploads with the same name but different groups apart (the document id is
``<groups>/<name>``), so nobody can replace a document they may not see.
"""

from __future__ import annotations

import os
import re
import shutil
import unicodedata
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import HTTPException, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from python_multipart.multipart import MultipartParser, parse_options_header

MAX_FILES = 100
MAX_FIELD_BYTES = 64 * 1024
MAX_NAME_CHARS = 150
WHATWG_ESCAPES = {"%0A": "\n", "%0D": "\r", "%22": '"'}
_UNSAFE = re.compile(r"[^\w.\-+()\[\] ]", re.UNICODE)


def safe_filename(name: str) -> str:
    """A plain file name: no folders, no control or shell-special characters, no leading dots."""
    for escaped, char in WHATWG_ESCAPES.items():  # how browsers and httpx send these in a file name
        name = name.replace(escaped, char)
    name = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in name)
    name = _UNSAFE.sub("_", name)
    name = re.sub(r"\s+", " ", name).strip(" .")
    if len(name) > MAX_NAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        ext = ext[:16] if dot else ""
        name = (stem if dot else name)[: MAX_NAME_CHARS - len(ext) - 1].rstrip(" .") + (f".{ext}" if ext else "")
    return name or "upload"


def groups_folder(groups: list[str]) -> str:
    """The documents sub-folder for a set of groups (group names are already plain)."""
    return "+".join(sorted(groups)) or "_"


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    name: str = ""
    filename: str | None = None
    path: Path | None = None
    handle: object = None
    data: bytearray = field(default_factory=bytearray)


@dataclass
class Upload:
    """What a multipart request carried: files on disk (name as sent, path) and text fields.

    The ingestion job later `place`s the files into their documents folder (keeping any
    file they replace), then `settle`s: a file that failed to ingest is removed (it is no
    document, and would fail again in every later job of that folder) and the one it
    replaced comes back; finally `discard` removes the staging folder.
    """

    staging: Path
    files: list[tuple[str, Path]] = field(default_factory=list)
    fields: dict[str, list[str]] = field(default_factory=dict)
    targets: list[Path] = field(default_factory=list)

    def place(self) -> None:
        for index, ((_, staged), target) in enumerate(zip(self.files, self.targets)):
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                os.replace(target, self.staging / f"{index}.previous")
            os.replace(staged, target)

    def settle(self, failed: set[Path]) -> None:
        for index, target in enumerate(self.targets):
            previous = self.staging / f"{index}.previous"
            if target in failed:
                target.unlink(missing_ok=True)
                if previous.exists():
                    os.replace(previous, target)

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def bad_request(message: str) -> HTTPException:
    return HTTPException(status_code=400, detail=message)


class _Reader:
    """python-multipart callbacks that stream file parts to files in ``upload.staging``."""

    def __init__(self, upload: Upload):
        self.upload = upload
        self.part = _Part()
        self.header_name = bytearray()
        self.header_value = bytearray()

    def callbacks(self) -> dict:
        return {name: getattr(self, name) for name in (
            "on_part_begin", "on_part_data", "on_part_end", "on_header_field",
            "on_header_value", "on_header_end", "on_headers_finished")}

    def on_part_begin(self) -> None:
        self.part = _Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.part.headers[bytes(self.header_name).lower()] = bytes(self.header_value)
        self.header_name.clear()
        self.header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.part.headers.get(b"content-disposition", b""))
        if b"name" not in options:
            raise bad_request("Every multipart part needs a Content-Disposition header with a name.")
        self.part.name = options[b"name"].decode("utf-8", "replace")
        if b"filename" in options:
            if len(self.upload.files) >= MAX_FILES:
                raise bad_request(f"Too many files in one upload (at most {MAX_FILES}).")
            self.part.filename = options[b"filename"].decode("utf-8", "replace")
            self.part.path = self.upload.staging / f"{len(self.upload.files)}.part"
            self.part.handle = open(self.part.path, "wb")  # noqa: SIM115 - closed in on_part_end
            self.upload.files.append((self.part.filename, self.part.path))

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.part.handle is not None:
            self.part.handle.write(data[start:end])
        else:
            self.part.data += data[start:end]
            if len(self.part.data) > MAX_FIELD_BYTES:
                raise bad_request(f"The form field '{self.part.name}' is longer than {MAX_FIELD_BYTES // 1024} KB.")

    def on_part_end(self) -> None:
        if self.part.handle is not None:
            self.part.handle.close()
        else:
            text = self.part.data.decode("utf-8", "replace")
            self.upload.fields.setdefault(self.part.name, []).append(text)

    def close(self) -> None:
        if self.part.handle is not None and not self.part.handle.closed:
            self.part.handle.close()


async def receive_upload(request: Request, uploads_dir: Path) -> Upload:
    """Stream a multipart/form-data body to disk. The caller must `discard()` the result.

    The body-size limit applies while reading (a 413 stops the transfer early).
    """
    ctype, options = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or not options.get(b"boundary"):
        raise HTTPException(status_code=415, detail="Send the files as multipart/form-data (field 'files').")
    upload = Upload(staging=uploads_dir / uuid.uuid4().hex)
    upload.staging.mkdir(parents=True)
    reader = _Reader(upload)
    try:
        parser = MultipartParser(options[b"boundary"], reader.callbacks())
        async for data in request.stream():
            parser.write(data)
        parser.finalize()
    except StarletteHTTPException:  # ours, and the 413 of the body-size limit
        upload.discard()
        raise
    except Exception as exc:  # python-multipart's parse errors: the body is malformed
        upload.discard()
        raise bad_request(f"The multipart body is malformed ({type(exc).__name__}).") from None
    finally:
        reader.close()
    return upload
