"""Who am I: the caller behind the API key (lets a client check its key and role)."""

from __future__ import annotations

import msgspec
from litestar import Controller, get

from service.api.deps import CallerDep


class Me(msgspec.Struct):
    owner: str
    role: str
    key_id: int


class MeController(Controller):
    path = "/v1/me"
    tags = ["auth"]

    @get(summary="The owner and role of the calling API key")
    async def me(self, caller: CallerDep) -> Me:
        return Me(owner=caller.owner, role=caller.role, key_id=caller.key_id)
