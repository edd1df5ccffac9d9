"""The explorer's pages and its sign-in: an API key in a POST body becomes an HttpOnly SameSite cookie."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import Cookie, State
from litestar.params import FromPath, URLEncodedBody
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from service.api.auth import same_origin
from service.domain.access import web_sessions
from service.domain.access.api_keys import Caller

HERE = Path(__file__).parent
TEMPLATES = TemplateConfig(directory=HERE / "templates", engine=JinjaTemplateEngine)
STATIC_FILES = create_static_files_router(path="/static", directories=[HERE / "static"])
# Every script and style comes from /static; nothing inline, nothing from elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


@dataclass
class SignIn:
    key: str


async def page_caller(request: Request) -> Caller | None:
    token = request.cookies.get(web_sessions.COOKIE_NAME)
    if not token:
        return None
    state = request.app.state
    return await web_sessions.caller_for_token(state.sessionmaker, state.settings.auth.secret, token, state.key_cache)


def session_cookie(request: Request, value: str, max_age: int) -> Cookie:
    return Cookie(
        key=web_sessions.COOKIE_NAME,
        value=value,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


def tag_vocabulary() -> list[str]:
    from service.ml.tags import known_tags

    return known_tags()


async def render(request: Request, template: str, page: str, **context: Any) -> Template | Redirect:
    caller = await page_caller(request)
    if caller is None:
        return Redirect("/signin")
    settings = request.app.state.settings
    return Template(
        template,
        context={"caller": caller, "page": page, "model": settings.model.default_alias, **context},
        headers=SECURITY_HEADERS,
    )


class WebController(Controller):
    include_in_schema = False

    @get("/")
    async def home(self, request: Request) -> Redirect:
        return Redirect("/generate" if await page_caller(request) else "/signin")

    @get("/signin")
    async def signin_page(self) -> Template:
        return Template("signin.html", context={"page": "signin", "error": None}, headers=SECURITY_HEADERS)

    @post("/session", status_code=303)
    async def sign_in(self, request: Request, state: State, data: URLEncodedBody[SignIn]) -> Response:
        if not same_origin(request):
            return _signin_error("Sign in from this site's own page.", 403)
        found = await web_sessions.sign_in(state.sessionmaker, state.settings.auth.secret, data.key, state.key_cache)
        if found is None:
            return _signin_error("That key is unknown or revoked.", 401)
        _, token = found
        return Redirect(
            "/generate", cookies=[session_cookie(request, token, web_sessions.SESSION_SECONDS)], status_code=303
        )

    @post("/signout", status_code=303)
    async def sign_out(self, request: Request) -> Redirect:
        return Redirect("/signin", cookies=[session_cookie(request, "", 0)], status_code=303)

    @get("/generate")
    async def generate(self, request: Request) -> Template | Redirect:
        return await render(request, "generate.html", "generate", tags=tag_vocabulary())

    @get("/library")
    async def library(self, request: Request) -> Template | Redirect:
        return await render(request, "library.html", "library", tags=tag_vocabulary())

    @get("/like/{generation_id:uuid}")
    async def like(self, request: Request, generation_id: FromPath[uuid.UUID]) -> Template | Redirect:
        return await render(request, "like.html", "like", source_id=str(generation_id), tags=tag_vocabulary())

    @get("/like")
    async def like_file(self, request: Request) -> Template | Redirect:
        return await render(request, "upload.html", "upload", tags=tag_vocabulary())

    @get("/likes")
    async def like_my_likes(self, request: Request) -> Template | Redirect:
        return await render(request, "likes.html", "likes", tags=tag_vocabulary())

    @get("/map")
    async def music_map(self, request: Request) -> Template | Redirect:
        return await render(request, "map.html", "map")


def _signin_error(message: str, status: int) -> Template:
    return Template(
        "signin.html", context={"page": "signin", "error": message}, status_code=status, headers=SECURITY_HEADERS
    )
