"""Find the files to ingest under the given paths, and say plainly why any cannot be read.

Symlinks are followed (to files and folders) but never in a circle; broken links,
loops, unreadable, empty, oversized and unsupported files come back as per-file
errors, so the run continues without them.

A document's id is its path relative to the given folder, prefixed with that folder's
name (`handbook/travel/leave.md`): stable across runs and across `./docs` vs
`/abs/docs`, and two folders with the same inner paths do not collide.
"""

from __future__ import annotations

import os
import stat
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ingest.parsers import ParseError, is_supported, require_supported
from rag.settings import Settings


@dataclass(frozen=True)
class Candidate:
    doc_id: str
    path: Path  # absolute, as found (a symlink stays a symlink; its id is its own path)
    relative: str  # path under the given folder (what group rules match); the name for a file
    size: int
    mtime: float

    @property
    def source(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class DiscoveryError:
    doc_id: str
    path: str
    reason: str
    kind: Literal["unsupported", "error"] = "error"


@dataclass
class Discovery:
    files: list[Candidate] = field(default_factory=list)
    errors: list[DiscoveryError] = field(default_factory=list)
    roots: list[Path] = field(default_factory=list)  # the given paths, absolute


def discover(paths: Iterable[Path | str], settings: Settings) -> Discovery:
    """Walk every path (file or folder); return readable candidates and per-file errors."""
    result = Discovery()
    seen_ids: set[str] = set()
    for given in paths:
        absolute = Path(os.path.abspath(given))  # absolute without resolving symlinks
        result.roots.append(absolute)
        if absolute.is_dir():
            root_name = absolute.name or "root"
            items = [(path, path.relative_to(absolute).as_posix()) for path in _walk(absolute, result)]
        else:
            root_name, items = "", [(absolute, absolute.name)]
        for path, relative in items:
            relative = normalise_doc_id(relative)
            doc_id = normalise_doc_id(f"{root_name}/{relative}")
            if doc_id in seen_ids:
                continue  # the same file named twice on the command line
            seen_ids.add(doc_id)
            try:
                result.files.append(check_file(path, doc_id, relative, settings.max_file_mb))
            except ParseError as exc:
                kind = "error" if is_supported(path) else "unsupported"
                result.errors.append(DiscoveryError(doc_id, str(path), exc.reason, kind))
    result.files.sort(key=lambda c: c.doc_id)
    return result


def normalise_doc_id(raw: str) -> str:
    """One spelling per path: NFC Unicode, forward slashes, no './' or duplicate slashes."""
    parts = [p for p in unicodedata.normalize("NFC", raw).replace("\\", "/").split("/") if p not in ("", ".")]
    return "/".join(parts)


def check_file(path: Path, doc_id: str, relative: str, max_file_mb: float) -> Candidate:
    """The checks that need no parsing; raises ParseError with the reason."""
    require_supported(path)
    try:
        info = path.stat()  # follows symlinks
    except FileNotFoundError as exc:
        if path.is_symlink():
            raise ParseError("the symbolic link is broken (its target does not exist)") from exc
        raise ParseError("the file does not exist") from exc
    except OSError as exc:
        if path.is_symlink():
            raise ParseError("the symbolic link leads into a loop of links") from exc
        raise ParseError(f"the file cannot be read ({exc.strerror or exc})") from exc
    if not stat.S_ISREG(info.st_mode):
        raise ParseError("the path is not a regular file")
    if info.st_size == 0:
        raise ParseError("the file is empty")
    if info.st_size > max_file_mb * 1048576:
        raise ParseError(
            f"the file is {info.st_size / 1048576:.3g} MB, larger than the limit of "
            f"{max_file_mb:g} MB (setting max_file_mb)"
        )
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except PermissionError as exc:
        raise ParseError("the file cannot be read (permission denied)") from exc
    except OSError as exc:
        raise ParseError(f"the file cannot be read ({exc.strerror or exc})") from exc
    return Candidate(doc_id, path, relative, info.st_size, info.st_mtime)


def _walk(root: Path, result: Discovery) -> list[Path]:
    """Every non-hidden entry under root, following folder symlinks once (no loops)."""
    found: list[Path] = []
    visited: set[tuple[int, int]] = set()  # (device, inode) of folders already walked
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            info = folder.stat()
        except OSError as exc:
            _folder_error(root, folder, result, exc)
            continue
        if (info.st_dev, info.st_ino) in visited:
            continue  # a symlink back to a folder we are already in: skip, do not loop
        visited.add((info.st_dev, info.st_ino))
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            _folder_error(root, folder, result, exc)
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue  # .git, .DS_Store, editor backups: never documents
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False  # a looping link: check_file reports it
            if is_dir:
                stack.append(path)
            else:
                found.append(path)
    return found


def _folder_error(root: Path, folder: Path, result: Discovery, exc: OSError) -> None:
    doc_id = normalise_doc_id(f"{root.name}/{folder.relative_to(root).as_posix()}")
    reason = "the folder cannot be read (permission denied)" if isinstance(exc, PermissionError) else (
        f"the folder cannot be read ({exc.strerror or exc})"
    )
    result.errors.append(DiscoveryError(doc_id, str(folder), reason))
