"""Requests per API key per minute, counted by the process's ``SharedState.rate_limiter`` (Redis when
``SOUNDALIKE_CACHE_URL`` is set, so every API process counts one limit; in-process otherwise).

Litestar's ``RateLimitMiddleware`` reads and rewrites a history under a process-local lock, which two processes
would race; this subclass keeps its configuration (exclusions, header names) and asks the limiter for one atomic
count instead.
"""

from __future__ import annotations

from litestar import Request
from litestar.datastructures import MutableScopeHeaders
from litestar.exceptions import TooManyRequestsException
from litestar.middleware.rate_limit import DURATION_VALUES, RateLimitConfig, RateLimitMiddleware
from litestar.types import Message, Receive, Scope, Send

from service.api.auth import PUBLIC_PATHS
from service.domain.access.shared_state import Window


class SharedRateLimitMiddleware(RateLimitMiddleware):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = scope["litestar_app"]
        request: Request = app.request_class(scope)
        if await self.should_check_request(request=request):
            limiter = app.state.shared.rate_limiter
            window = await limiter.hit(self.cache_key_from_request(request), DURATION_VALUES[self.unit])
            headers = self.window_headers(window)
            if window.count > self.max_requests:
                raise TooManyRequestsException(headers=headers)
            send = _adding_headers(send, headers)
        await self.app(scope, receive, send)

    def window_headers(self, window: Window) -> dict[str, str]:
        config = self.config
        return {
            config.rate_limit_policy_header_key: f"{self.max_requests}; w={DURATION_VALUES[self.unit]}",
            config.rate_limit_limit_header_key: str(self.max_requests),
            config.rate_limit_remaining_header_key: str(max(self.max_requests - window.count, 0)),
            config.rate_limit_reset_header_key: str(window.reset_seconds),
        }


def _adding_headers(send: Send, headers: dict[str, str]) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message.setdefault("headers", [])
            response_headers = MutableScopeHeaders(message)
            for name, value in headers.items():
                response_headers[name] = value
        await send(message)

    return wrapped


def per_key(request: Request) -> str:
    user = request.scope.get("user")
    return f"key:{user.key_id}" if user is not None else f"ip:{request.client.host if request.client else '?'}"


def rate_limit(per_minute: int) -> RateLimitConfig:
    return RateLimitConfig(
        rate_limit=("minute", per_minute),
        identifier_for_request=per_key,
        exclude=PUBLIC_PATHS,
        middleware_class=SharedRateLimitMiddleware,
    )
