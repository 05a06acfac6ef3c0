"""API keys: who may call the REST API, and which document groups each caller sees.

A key is a random ``rag_...`` token shown once at creation. Only its SHA-256 hash is
stored, in ``<data_dir>/keys.json`` (mode 0600, replaced atomically), next to its id,
name, groups, admin flag, creation time and revoked flag. The API re-reads the file
when it changes on disk, so keys made or revoked with `rag keys` work without a restart.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rag.settings import Settings

TOKEN_PREFIX = "rag_"
# Group and key names travel in CLI options (comma-separated) and URLs: keep them plain.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class KeyStoreError(ValueError):
    """A key operation refused, explained in one sentence."""


@dataclass
class ApiKey:
    id: str
    name: str
    groups: list[str]
    admin: bool = False
    created: float = field(default_factory=time.time)
    revoked: bool = False
    hash: str = field(default="", repr=False)

    def public(self) -> dict:
        """Everything but the hash: what `rag keys list` and logs may show."""
        data = asdict(self)
        data.pop("hash")
        return data


def keys_file(settings: Settings) -> Path:
    return settings.api_keys_file or settings.data_dir / "keys.json"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def parse_groups(text: str | Sequence[str] | None) -> list[str]:
    """Groups from ``"a,b"`` or a list; each checked against NAME_PATTERN, duplicates removed."""
    if text is None:
        return []
    items = text.split(",") if isinstance(text, str) else list(text)
    groups: list[str] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        if not NAME_PATTERN.match(item):
            raise KeyStoreError(
                f"'{item}' is not a valid group name (letters, digits, '.', '_', '@', '-'; at most 64)"
            )
        if item not in groups:
            groups.append(item)
    return groups


class KeyStore:
    """The key file: create, list, revoke, and check presented tokens (thread-safe)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._mutex = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._keys: list[ApiKey] = []

    @classmethod
    def for_settings(cls, settings: Settings) -> KeyStore:
        return cls(keys_file(settings))

    # --- reading ---------------------------------------------------------------------
    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _load(self) -> list[ApiKey]:
        """The keys on disk, re-read only when the file changed (one stat per call)."""
        with self._mutex:
            stamp = self._file_stamp()
            if stamp != self._stamp:
                self._keys = self._read() if stamp is not None else []
                self._stamp = stamp
            return list(self._keys)

    def _read(self) -> list[ApiKey]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return [ApiKey(**entry) for entry in data.get("keys", [])]
        except (OSError, ValueError, TypeError) as exc:
            raise KeyStoreError(f"the key file {self.path} is unreadable ({type(exc).__name__}); "
                            "restore it from a backup or remove it and create new keys") from None

    def list(self) -> list[ApiKey]:
        return self._load()

    def authenticate(self, token: str | None) -> ApiKey | None:
        """The active key whose hash matches ``token``, else None.

        Every stored hash is compared in constant time, so timing reveals nothing about
        how close a guess came or which entry matched.
        """
        if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        presented = hash_token(token)
        found = None
        for key in self._load():
            if hmac.compare_digest(presented, key.hash) and not key.revoked:
                found = key
        return found

    # --- writing ---------------------------------------------------------------------
    @contextmanager
    def _writing(self) -> Iterator[list[ApiKey]]:
        """Read-modify-write under an exclusive file lock (the CLI and the API may race)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_suffix(".lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            keys = self._read() if self.path.exists() else []
            yield keys
            self._write(keys)

    def _write(self, keys: list[ApiKey]) -> None:
        payload = json.dumps({"version": 1, "keys": [asdict(k) for k in keys]}, indent=2)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".keys-", suffix=".tmp")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(payload)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def create(self, name: str, groups: Sequence[str] | str | None, admin: bool = False) -> tuple[ApiKey, str]:
        """A new key and its token (the only time the token exists outside the caller)."""
        name = name.strip()
        if not NAME_PATTERN.match(name):
            raise KeyStoreError(f"'{name}' is not a valid key name (letters, digits, '.', '_', '@', '-'; at most 64)")
        group_list = parse_groups(groups)
        if not group_list and not admin:
            raise KeyStoreError("a non-admin key needs at least one group (--groups g1,g2)")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._writing() as keys:
            if any(k.name == name and not k.revoked for k in keys):
                raise KeyStoreError(f"an active key named '{name}' already exists; revoke it or pick another name")
            key = ApiKey(id="key_" + secrets.token_hex(6), name=name, groups=group_list,
                         admin=admin, hash=hash_token(token))
            keys.append(key)
        return key, token

    def revoke(self, id_or_name: str) -> ApiKey:
        with self._writing() as keys:
            matches = [k for k in keys if k.id == id_or_name] or [
                k for k in keys if k.name == id_or_name and not k.revoked
            ]
            if not matches:
                raise KeyStoreError(f"no active key has the id or name '{id_or_name}' (see `rag keys list`)")
            for key in matches:
                key.revoked = True
        return matches[0]
