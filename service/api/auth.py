"""Bearer API-key authentication and role guards.

Every route needs ``Authorization: Bearer <key>`` except health, readiness and the OpenAPI docs.
Handlers take the caller as ``caller: Caller`` (dependency) and restrict roles with
``guards=[requires_role("creator")]``.
"""

from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult, DefineMiddleware

from service.domain.api_keys import Caller, authenticate

PUBLIC_PATHS = ["^/health$", "^/ready$", "^/schema"]


class ApiKeyAuthentication(AbstractAuthenticationMiddleware):
    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:
        header = connection.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise NotAuthorizedException("missing API key: send `Authorization: Bearer <key>`")
        state = connection.app.state
        caller = await authenticate(state.sessionmaker, state.settings.auth.secret, key.strip(), state.key_cache)
        if caller is None:
            raise NotAuthorizedException("unknown or revoked API key")
        return AuthenticationResult(user=caller, auth=caller.key_id)


authentication_middleware = DefineMiddleware(ApiKeyAuthentication, exclude=PUBLIC_PATHS)


def requires_role(role: str):
    """A guard that lets callers with at least ``role`` through (reader < creator < admin)."""

    def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
        caller: Caller = connection.user
        if not caller.has_role(role):
            raise PermissionDeniedException(f"this needs the {role} role; your key has {caller.role}")

    return guard


def provide_caller(request: ASGIConnection) -> Caller:
    return request.user
