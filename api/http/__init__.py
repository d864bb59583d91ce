"""The HTTP interface: the FastAPI application (:mod:`api.http.app`, served by
:mod:`api.http.asgi`), its dependencies, problem responses, limits, request signatures, metrics,
the listening socket, and the routes (docs/api.md)."""
