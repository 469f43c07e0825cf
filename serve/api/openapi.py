"""The API's OpenAPI document, patched with this server's real limits and authentication."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from model.config import ServeConfig


def document_limits(app: FastAPI, cfg: ServeConfig) -> None:
    """Write this server's limits (and auth, if on) into its OpenAPI document, so clients and
    fuzzers see the real maxima rather than ones fixed when the schema classes were written."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes, tags=app.openapi_tags
            )
            components = schema.get("components", {}).get("schemas", {})
            for name, spec in components.items():
                props = spec.get("properties", {})
                if name.startswith(("SegmentIn", "CallSegmentIn")) and "text" in props:
                    props["text"]["maxLength"] = cfg.max_chars_per_segment
                if name.startswith(("ScoreRequest", "CallRequest")) and "segments" in props:
                    props["segments"]["maxItems"] = cfg.max_segments
                    props["segments"]["description"] = (
                        f"{props['segments'].get('description', '')} (at most {cfg.max_segments} segments and "
                        f"{cfg.max_chars_per_request} characters per request)"
                    ).strip()
            if cfg.api_key:
                schema.setdefault("components", {})["securitySchemes"] = {
                    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                    "Bearer": {"type": "http", "scheme": "bearer"},
                }
                for path, ops in schema.get("paths", {}).items():
                    if path.startswith("/v1/"):
                        for op in ops.values():
                            op["security"] = [{"ApiKey": []}, {"Bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
