"""Who am I: GET /v1/me tells a client (the web UI) whose key it holds.

The answer is the key's public identity (never the key or its hash), so a client can
show the user's name and groups and offer admin-only controls only to admins.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from rag.api.auth import Caller

router = APIRouter(prefix="/v1", tags=["identity"])


class Me(BaseModel):
    key_id: str
    name: str
    groups: list[str] = Field(description="The groups whose documents this key sees.")
    admin: bool = Field(description="Admins see every document and may assign any groups.")


@router.get("/me", response_model=Me, summary="The identity behind the caller's API key.")
def me(caller: Caller) -> Me:
    return Me(key_id=caller.key_id, name=caller.name, groups=list(caller.groups), admin=caller.admin)
