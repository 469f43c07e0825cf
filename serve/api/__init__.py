"""The HTTP API: app and routes, middleware, error handlers, OpenAPI patching, request schemas, micro-batcher."""
