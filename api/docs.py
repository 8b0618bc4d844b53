"""The interactive API docs, served from the app itself so that they work on a network with no way out.

FastAPI's own /docs and /redoc pages load Swagger UI and ReDoc from a CDN; offline they are blank.
The assets come from the `fastapi-offline` package (MIT; Swagger UI 5 and ReDoc 2 bundles, with
their own licences inside the files) and are mounted under ASSETS_URL. Like /healthz, none of this
needs an API key, and none of it appears in the OpenAPI schema."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"
DOCS_URL = "/docs"
REDOC_URL = "/redoc"
ASSETS_DIR = files("fastapi_offline").joinpath("static")  # swagger-ui-bundle.js, swagger-ui.css, favicon.png, ...


def install_docs(app: FastAPI) -> None:
    """Mount the docs assets and register /docs, its OAuth2 redirect and /redoc on `app`, which must
    have been built with docs_url=None and redoc_url=None (so FastAPI adds no CDN-backed pages)."""
    if app.openapi_url is None:
        return  # no schema, nothing to document
    openapi_url = app.openapi_url
    oauth2_redirect_url = app.swagger_ui_oauth2_redirect_url
    # Swagger UI would otherwise send the schema to validator.swagger.io for a badge
    swagger_ui_parameters: dict[str, Any] = {"validatorUrl": None, **(app.swagger_ui_parameters or {})}

    app.mount(ASSETS_URL, StaticFiles(directory=str(ASSETS_DIR)), name="docs-assets")

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            oauth2_redirect_url=root + oauth2_redirect_url if oauth2_redirect_url else None,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters=swagger_ui_parameters,
        )

    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )

    app.add_api_route(DOCS_URL, swagger_ui, methods=["GET"], include_in_schema=False)
    if oauth2_redirect_url:
        app.add_api_route(oauth2_redirect_url, oauth2_redirect, methods=["GET"], include_in_schema=False)
    app.add_api_route(REDOC_URL, redoc, methods=["GET"], include_in_schema=False)
