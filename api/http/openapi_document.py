"""What the OpenAPI document says beyond what FastAPI writes from the routes by itself.

- The catalogue: every fact type a component schema (``ConsentGiven`` ...), generated from the
  adapter :func:`ledger.events.parse_fact` validates with (:func:`ledger.events.fact_json_schema`),
  so the two cannot drift; ``Fact``, their union discriminated by ``type``; each type with its
  example (:mod:`api.http.fact_examples`).
- ``Problem``, the problem document (``application/problem+json``) every error answers, from
  :class:`api.http.problems.Problem` (:func:`api.http.problems.problem_schemas`). The other
  answers' schemas are the routes' own (``responses`` models of :mod:`api.http.responses`).
- Security: a ``bearer`` scheme on each operation that checks a token, and the scope it checks as
  ``x-required-scope``, read from the check itself (:func:`required_scope`), never from a table
  kept by hand. (The security requirement's list stays empty, as tools written for OpenAPI 3.0,
  where only OAuth2 scopes may fill it, expect.)

:func:`complete` adds all of it to the document FastAPI made.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from fastapi import routing
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from api.http.deps import authorise, authorised
from api.http.fact_examples import BY_TYPE
from api.http.problems import problem_schemas
from api.token_store import Scope
from ledger.events import (
    FACT_TYPES,
    MAX_DEPTH,
    MAX_EVENT_BYTES,
    fact_json_schema,
)

BEARER = "bearer"
"""The name of the security scheme in ``components.securitySchemes``."""
SCOPE_KEY = "x-required-scope"
"""The extension naming, on an operation, the scope its token must carry."""
COMPONENTS = "#/components/schemas/"
FACT = "Fact"
"""The component schema of one fact: the catalogue's types, discriminated by ``type``."""


def ref(name: str) -> dict[str, str]:
    """A reference to the component schema ``name``."""
    return {"$ref": COMPONENTS + name}


_CHECK_CODE = authorised(Scope.ADMIN).__code__
"""The code of every check :func:`~api.http.deps.authorised` makes, whatever its scope."""


# -- the catalogue --------------------------------------------------------------------------------

FACT_DESCRIPTION = (
    "One fact, of one of the catalogue's types (docs/events.md), told apart by `type`. "
    "Beyond what this schema says, the ledger refuses (422, each problem named in `errors`): "
    f"an event of more than {MAX_EVENT_BYTES} bytes encoded as JSON, or nesting objects and "
    f"arrays more than {MAX_DEPTH} deep; a time outside its bounds (each time field says "
    "them); and a fact that does not fit what the log holds: a policy version, recipient, "
    "incident, request or event it names that was never recorded, an id recorded before, a "
    "purpose the policy version does not list, a step out of order, a subject erased. "
    'Values are read strictly: `"15"` is not an age, and neither is `15.0` (a whole number '
    'is written without a fraction); `"yes"` is not true.'
)


def fact_schemas() -> dict[str, Any]:
    """The component schemas of the catalogue: ``Fact`` and every type and part it refers to,
    each type with its example from :data:`api.http.fact_examples.EXAMPLES`."""
    schema = fact_json_schema(ref_template=COMPONENTS + "{model}")
    schemas: dict[str, Any] = schema.pop("$defs")
    for type_name, model in FACT_TYPES.items():
        if type_name not in BY_TYPE:
            raise RuntimeError(f"api/http/fact_examples.py has no example of {type_name}")
        schemas[model.__name__]["examples"] = [BY_TYPE[type_name]]
    schemas[FACT] = {**schema, "description": FACT_DESCRIPTION}
    return schemas


def facts_body(max_batch: int) -> dict[str, Any]:
    """The schema of ``POST /v1/events``'s body: one fact, or a batch of 1 to ``max_batch``."""
    return {
        "oneOf": [
            ref(FACT),
            {
                "type": "array",
                "items": ref(FACT),
                "minItems": 1,
                "maxItems": max_batch,
                "description": f"A batch: recorded all or nothing, at most {max_batch:,} facts "
                "(the ledger's `max_batch`, 1,000 unless its operator set another; "
                "413 above). An event id appears once in a batch.",
            },
        ]
    }


# -- security -------------------------------------------------------------------------------------


def api_routes(routes: Sequence[BaseRoute]) -> Iterator[tuple[str, APIRoute]]:
    """Each API route of ``routes`` with its path as the OpenAPI document writes it.

    Recent FastAPI (0.165 here) keeps an included router as one route, walked with
    ``iter_route_contexts`` as its own document generation does; earlier versions copy the
    router's routes into the app's.
    """
    walk = getattr(routing, "iter_route_contexts", None)
    if walk is None:
        for route in routes:
            if isinstance(route, APIRoute):
                yield route.path_format, route
        return
    for context in walk(routes):
        if isinstance(context.original_route, APIRoute):
            yield context.path_format, context.original_route


def required_scope(route: APIRoute) -> Scope | None:
    """The scope the route's token must carry, as the route checks it; None when it checks no
    token.

    Read from the check: a dependency made by :func:`~api.http.deps.authorised` holds its scope
    in its closure; a route that calls :func:`~api.http.deps.authorise` itself (the lean append
    route) names one :class:`Scope` member in its code. A route checking two scopes, or calling
    ``authorise`` without naming one, is an error here, not a guess.
    """
    found: set[Scope] = set()
    for dependant in _dependants(route.dependant):
        call = dependant.call
        if getattr(call, "__code__", None) is _CHECK_CODE and call is not None:
            scope = inspect.getclosurevars(call).nonlocals.get("scope")
            if not isinstance(scope, Scope):
                raise RuntimeError(f"{route.path}: a token check without a scope")
            found.add(scope)
    code = getattr(route.endpoint, "__code__", None)
    if code is not None and authorise.__name__ in code.co_names:
        named = {scope for scope in Scope if scope.name in code.co_names}
        if len(named) != 1:
            raise RuntimeError(f"{route.path}: authorise() called without one Scope named")
        found |= named
    if len(found) > 1:
        raise RuntimeError(f"{route.path}: checks several scopes: {sorted(found)}")
    return next(iter(found), None)


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from _dependants(sub)


def add_security(document: dict[str, Any], routes: Iterable[tuple[str, APIRoute]]) -> None:
    """Declare the ``bearer`` scheme; put it on each operation that checks a token, and the
    scope it checks in ``x-required-scope``."""
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {})[BEARER] = {
        "type": "http",
        "scheme": "bearer",
        "description": "A client's token, as `consent-ledger clients add` prints it. Each "
        f"operation that needs one names the scope the token must carry in `{SCOPE_KEY}` "
        "(docs/api.md, Clients and scopes); without a token the answer is 401, without the "
        "scope 403.",
    }
    paths = document.get("paths", {})
    for path, route in routes:
        scope = required_scope(route) if route.include_in_schema else None
        if scope is None:
            continue
        for method in route.methods or ():
            operation = paths.get(path, {}).get(method.lower())
            if operation is not None:
                operation["security"] = [{BEARER: []}]
                operation[SCOPE_KEY] = scope.value


# -- the whole --------------------------------------------------------------------------------


def add_schemas(document: dict[str, Any], schemas: Mapping[str, Any]) -> None:
    """Add component schemas; one already there under the same name must be the same."""
    found = document.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in schemas.items():
        if name in found and found[name] != schema:
            raise RuntimeError(f"two different component schemas are named {name}")
        found[name] = schema


def complete(document: dict[str, Any], routes: Iterable[tuple[str, APIRoute]]) -> None:
    """Everything this module adds (idempotent: FastAPI may hand the same document again)."""
    add_schemas(document, {**problem_schemas(), **fact_schemas()})
    add_security(document, routes)
