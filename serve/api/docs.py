"""``/docs`` served from this server: Swagger UI's files come from the PyPI package
``fastapi-swagger`` (its ``resources`` folder), not from a CDN, so the page works on an
air-gapped machine. ReDoc (CDN-only in FastAPI) is switched off rather than half-working."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

SWAGGER_PREFIX = "/static/swagger"


def swagger_dir() -> Path:
    return Path(str(files("fastapi_swagger") / "resources"))


def add_docs(app: FastAPI) -> None:
    """Mount the Swagger UI files and serve ``/docs`` pointing at them (create the app with
    ``docs_url=None, redoc_url=None``)."""
    app.mount(SWAGGER_PREFIX, StaticFiles(directory=swagger_dir()), name="swagger")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + (app.openapi_url or "/openapi.json"),
            title=f"{app.title} — API docs",
            swagger_js_url=f"{root}{SWAGGER_PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{SWAGGER_PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{root}{SWAGGER_PREFIX}/favicon-32x32.png",
        )
