"""Who is calling: the API key in ``Authorization: Bearer <key>`` becomes a Principal.

Every route depends on `principal` (401 without a valid key) or `admin` (403 for a
non-admin key). The principal's `read_groups` is what the service filters reads with:
None (unrestricted) for admins, the key's groups otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from rag.keys import ApiKey

# auto_error=False: we answer 401 (not FastAPI's default) with our own message.
bearer = HTTPBearer(auto_error=False, description="An API key made with `rag keys create`.")


@dataclass(frozen=True)
class Principal:
    key_id: str
    name: str
    groups: tuple[str, ...]
    admin: bool

    @classmethod
    def from_key(cls, key: ApiKey) -> Principal:
        return cls(key.id, key.name, tuple(key.groups), key.admin)

    @property
    def read_groups(self) -> list[str] | None:
        """The service's access filter: None = every document (admin)."""
        return None if self.admin else list(self.groups)

    def may_assign(self, groups: Sequence[str]) -> bool:
        """Upload rule: admins assign any groups; others only groups their key has."""
        return self.admin or set(groups) <= set(self.groups)

    def may_delete(self, document_groups: Sequence[str]) -> bool:
        """Delete rule: admins, or a key sharing at least one group with the document."""
        return self.admin or bool(set(document_groups) & set(self.groups))


def unauthorized(message: str) -> HTTPException:
    return HTTPException(status_code=401, detail=message, headers={"WWW-Authenticate": "Bearer"})


def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if credentials is None:
        raise unauthorized("An API key is required: send 'Authorization: Bearer <key>'.")
    key = request.app.state.keys.authenticate(credentials.credentials)
    if key is None:
        raise unauthorized("The API key is not valid or has been revoked.")
    request.state.principal = key.id  # for logs and metrics: the key's id, never the key
    return Principal.from_key(key)


def admin(caller: Annotated[Principal, Depends(principal)]) -> Principal:
    if not caller.admin:
        raise HTTPException(status_code=403, detail="This route needs an admin key.")
    return caller


Caller = Annotated[Principal, Depends(principal)]
Admin = Annotated[Principal, Depends(admin)]
