"""Bearer API-key authentication and role guards.

Every route needs ``Authorization: Bearer <key>`` except health, readiness and the OpenAPI docs; a browser
signed in to the explorer (``service.web``) sends its session cookie instead, and a state-changing request
with that cookie must come from the same origin.
Handlers take the caller as ``caller: Caller`` (dependency) and restrict roles with
``guards=[requires_role("creator")]``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult, DefineMiddleware

from service.domain.access.api_keys import Caller, authenticate
from service.domain.access.web_sessions import COOKIE_NAME, caller_for_token
from service.web import WEB_PATHS

PUBLIC_PATHS = ["^/health$", "^/ready$", "^/schema"]
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class ApiKeyAuthentication(AbstractAuthenticationMiddleware):
    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:
        header = connection.headers.get("authorization", "")
        if not header and (token := connection.cookies.get(COOKIE_NAME)):
            return await _from_session_cookie(connection, token)
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise NotAuthorizedException("missing API key: send `Authorization: Bearer <key>`")
        state = connection.app.state
        caller = await authenticate(state.sessionmaker, state.settings.auth.secret, key.strip(), state.key_cache)
        if caller is None:
            raise NotAuthorizedException("unknown or revoked API key")
        return AuthenticationResult(user=caller, auth=caller.key_id)


async def _from_session_cookie(connection: ASGIConnection, token: str) -> AuthenticationResult:
    if connection.scope["method"] not in SAFE_METHODS and not same_origin(connection):
        raise PermissionDeniedException("a request with the session cookie must come from this site's own pages")
    state = connection.app.state
    caller = await caller_for_token(state.sessionmaker, state.settings.auth.secret, token, state.key_cache)
    if caller is None:
        raise NotAuthorizedException("the session expired or its key was revoked: sign in again at /signin")
    return AuthenticationResult(user=caller, auth=caller.key_id)


def same_origin(connection: ASGIConnection) -> bool:
    """The request's Origin is this host (a browser sends Origin with every POST, PATCH and DELETE)."""
    origin = connection.headers.get("origin")
    if origin is None:
        return connection.headers.get("sec-fetch-site") in (None, "same-origin")
    return urlsplit(origin).netloc == connection.headers.get("host")


authentication_middleware = DefineMiddleware(ApiKeyAuthentication, exclude=PUBLIC_PATHS + WEB_PATHS)


def requires_role(role: str):
    """A guard that lets callers with at least ``role`` through (reader < creator < admin)."""

    def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
        if connection.scope["method"] == "OPTIONS":  # unauthenticated (CORS preflight); it only lists methods
            return
        caller: Caller = connection.user
        if not caller.has_role(role):
            raise PermissionDeniedException(f"this needs the {role} role; your key has {caller.role}")

    return guard


def provide_caller(request: ASGIConnection) -> Caller:
    return request.user
