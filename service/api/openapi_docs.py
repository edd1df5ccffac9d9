"""The OpenAPI document and its docs page, served with no network: Swagger UI's files ship in the package.

``/schema`` and ``/schema/swagger`` are Swagger UI, ``/schema/openapi.json`` the document. Litestar's own
render plugins load their scripts, styles, fonts and favicon from CDNs; this one serves the files of
``swagger_ui/`` (swagger-ui-dist from the npm registry, unchanged, with its Apache-2.0 LICENSE and NOTICE)
under ``/schema/swagger-ui/``, which is public like the rest of ``/schema``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Request, Router
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.static_files import create_static_files_router
from msgspec import Meta

from service import __version__

SCHEMA_PATH = "/schema"
ASSETS = Path(__file__).parent / "swagger_ui"
ASSETS_PATH = "/swagger-ui"  # below SCHEMA_PATH


class OfflineSwaggerPlugin(SwaggerRenderPlugin):
    """Swagger UI from the package's own copy: no CDN, no favicon from elsewhere, no online validator."""

    def __init__(self) -> None:
        base = f"{SCHEMA_PATH}{ASSETS_PATH}"
        super().__init__(
            path=["/", "/swagger"],
            js_url=f"{base}/swagger-ui-bundle.js",
            css_url=f"{base}/swagger-ui.css",
            standalone_preset_js_url=f"{base}/swagger-ui-standalone-preset.js",
            favicon=f"<link rel='icon' type='image/png' href='{base}/favicon-32x32.png'>",
        )

    def render(self, request: Request, openapi_schema: dict[str, Any]) -> bytes:
        # Swagger UI would otherwise ask validator.swagger.io about the document
        page = super().render(request, openapi_schema)
        return page.replace(b"dom_id: '#swagger-container',", b"dom_id: '#swagger-container', validatorUrl: null,", 1)

    def receive_router(self, router: Router) -> None:
        super().receive_router(router)
        router.register(create_static_files_router(path=ASSETS_PATH, directories=[ASSETS], include_in_schema=False))


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Soundalike",
        version=__version__,
        description="Generate music, find clips that sound alike, restyle and regenerate variants. "
        "Errors are RFC 9457 problem details.",
        path=SCHEMA_PATH,
        render_plugins=[OfflineSwaggerPlugin(), JsonRenderPlugin()],
        components=Components(
            security_schemes={"apiKey": SecurityScheme(type="http", scheme="bearer", description="API key")}
        ),
        security=[{"apiKey": []}],
    )


def bounds(minimum: float | None = None, maximum: float | None = None) -> Meta:
    """A field's range as the OpenAPI document states it, for a field the domain checks itself (its 422 names
    the field; a msgspec bound would answer 400 first). Also for a bound of 0, which Litestar leaves out of the
    document when it comes from ``Meta(ge=0)`` on an optional field."""
    limits = {"minimum": minimum, "maximum": maximum}
    return Meta(extra_json_schema={"extra": {k: v for k, v in limits.items() if v is not None}})


def items(count: int) -> Meta:
    """A list field that must hold exactly ``count`` items (the domain checks it and names the field)."""
    return Meta(extra_json_schema={"extra": {"min_items": count, "max_items": count}})


def one_of(values: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``schema_extra`` of a string query parameter the domain checks against these values (its 4xx names it)."""
    return {"enum": list(values)}
