"""The OpenAPI document: valid OpenAPI 3.1, every example valid against its schema, the
catalogue's schemas saying what the validators accept, a scope on every operation that checks
a token, the signature header as the client writes it."""

from __future__ import annotations

import base64
import copy
import re
from collections.abc import Iterator
from typing import Annotated, Any

import jsonschema_rs
import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import OpenAPIV31SpecValidator

from api.http.app import create_app
from api.http.deps import authorise, authorised
from api.http.fact_examples import BY_TYPE, CONTEXT, EXAMPLES
from api.http.openapi_document import BEARER, FACT, SCOPE_KEY, api_routes, required_scope
from api.http.problems import PROBLEM
from api.http.signatures import HEADER
from api.token_store import Scope
from ledger.config import Settings
from ledger.errors import ValidationError
from ledger.events import FACT_TYPES, parse_fact

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    """The app as served (its lifespan, which opens the storage, is not run: not needed)."""
    return create_app(Settings(data_dir=tmp_path_factory.mktemp("data")))


@pytest.fixture(scope="module")
def document(app: FastAPI) -> dict[str, Any]:
    found: dict[str, Any] = app.openapi()
    return found


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


# -- the document --------------------------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1.")
    errors = [error.message for error in OpenAPIV31SpecValidator(document).iter_errors()]
    assert errors == []


def test_the_validator_sees_a_broken_document(document: dict[str, Any]) -> None:
    """The check above can fail: a response without its description is not OpenAPI."""
    broken = copy.deepcopy(document)
    del broken["paths"]["/v1/events"]["post"]["responses"]["201"]["description"]
    assert list(OpenAPIV31SpecValidator(broken).iter_errors())


# -- examples ------------------------------------------------------------------------------------


def examples_in(document: dict[str, Any]) -> Iterator[tuple[str, Any, Any]]:
    """Every example of the document, as (where, schema, value)."""

    def of(where: str, holder: dict[str, Any], schema: Any) -> Iterator[tuple[str, Any, Any]]:
        if "example" in holder:
            yield where, schema, holder["example"]
        for name, named in (holder.get("examples") or {}).items():
            yield f"{where} examples.{name}", schema, named["value"]

    for path, method, operation in operations(document):
        at = f"{method.upper()} {path}"
        for parameter in operation.get("parameters", []):
            yield from of(f"{at} {parameter['name']}", parameter, parameter["schema"])
        for media, content in operation.get("requestBody", {}).get("content", {}).items():
            yield from of(f"{at} body {media}", content, content.get("schema", {}))
        for status, answer in operation["responses"].items():
            for media, content in answer.get("content", {}).items():
                yield from of(f"{at} {status} {media}", content, content.get("schema", {}))
            for name, header in answer.get("headers", {}).items():
                yield from of(f"{at} {status} {name}", header, header.get("schema", {}))

    def within(where: str, schema: Any) -> Iterator[tuple[str, Any, Any]]:
        if isinstance(schema, dict):
            for value in schema.get("examples", []) if isinstance(schema, dict) else []:
                yield where, schema, value
            if "example" in schema:
                yield where, schema, schema["example"]
            for key, sub in schema.items():
                if key in ("properties", "$defs", "patternProperties"):
                    for name, inner in sub.items():
                        yield from within(f"{where}.{name}", inner)
                elif key in ("items", "additionalProperties", "not"):
                    yield from within(f"{where}[]", sub)
                elif key in ("oneOf", "anyOf", "allOf", "prefixItems"):
                    for index, inner in enumerate(sub):
                        yield from within(f"{where}/{index}", inner)

    for name, schema in document["components"]["schemas"].items():
        yield from within(f"components.schemas.{name}", schema)


def schema_errors(document: dict[str, Any], schema: Any, value: Any) -> list[str]:
    """What is wrong with ``value`` for ``schema``, in OpenAPI 3.1's dialect, formats checked,
    its references into ``document``'s components."""
    rooted = {**schema, "components": document["components"]}
    validator = OAS31Validator(rooted, format_checker=OAS31Validator.FORMAT_CHECKER)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(value)]


def test_every_example_validates_against_its_schema(document: dict[str, Any]) -> None:
    found = list(examples_in(document))
    wrong = {
        where: errors for where, s, value in found if (errors := schema_errors(document, s, value))
    }
    assert wrong == {}
    wheres = " ".join(where for where, _, _ in found)
    # Every fact type's schema holds an example, POST /v1/events' body one of each, and its
    # answers and the problem answers theirs: the walk above reached them all.
    for model in FACT_TYPES.values():
        assert f"components.schemas.{model.__name__} " in wheres + " "
    assert wheres.count("POST /v1/events body application/json examples.") == len(EXAMPLES) + 1
    assert "POST /v1/events 201 application/json examples.minimal batch" in wheres
    assert "GET /v1/events/{seq} 200 application/json" in wheres


def test_an_example_that_breaks_its_schema_is_seen(document: dict[str, Any]) -> None:
    """The walk checks for real: a wrong example of a fact, a receipt and a header fails."""
    fact = document["components"]["schemas"]["ConsentGiven"]
    assert schema_errors(document, fact, dict(BY_TYPE["consent.given"], age=3))
    assert schema_errors(document, fact, dict(BY_TYPE["consent.given"], purposes=[]))
    answer = document["paths"]["/v1/events"]["post"]["responses"]["201"]["content"]
    assert schema_errors(document, answer["application/json"]["schema"], {"seq": "ten"})
    signature = next(
        p
        for p in document["paths"]["/v1/events"]["post"]["parameters"]
        if p["name"] == "Content-Signature"
    )
    assert schema_errors(document, signature["schema"], "ed25519=not base64")


# -- the catalogue -------------------------------------------------------------------------------


def test_every_fact_type_is_a_member_of_the_fact_union(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    union = schemas[FACT]
    mapping = union["discriminator"]["mapping"]
    assert union["discriminator"]["propertyName"] == "type"
    assert mapping == {t: f"#/components/schemas/{m.__name__}" for t, m in FACT_TYPES.items()}
    assert sorted(m["$ref"] for m in union["oneOf"]) == sorted(mapping.values())
    for type_name, model in FACT_TYPES.items():
        member = schemas[model.__name__]
        assert member["properties"]["type"]["const"] == type_name
        assert member["additionalProperties"] is False
        assert member["examples"] == [BY_TYPE[type_name]]


def test_the_append_body_is_one_fact_or_a_batch_of_them(document: dict[str, Any]) -> None:
    body = document["paths"]["/v1/events"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    one, batch = schema["oneOf"]
    assert one == {"$ref": "#/components/schemas/Fact"}
    assert batch["items"] == one
    assert (batch["minItems"], batch["maxItems"]) == (1, 1000)
    assert body["required"] is True
    assert not schema_errors(document, schema, list(EXAMPLES))
    assert schema_errors(document, schema, [])
    assert schema_errors(document, schema, {"type": "consent.maybe", "event_id": "e"})


@pytest.mark.parametrize("fact", [*CONTEXT, *EXAMPLES], ids=lambda f: f["event_id"])
def test_every_example_fact_is_valid(fact: dict[str, Any]) -> None:
    assert fact["type"] == parse_fact(fact).TYPE


def test_every_type_has_one_example() -> None:
    assert sorted(BY_TYPE) == sorted(FACT_TYPES)
    assert len(EXAMPLES) == len(FACT_TYPES)
    ids = [f["event_id"] for f in [*CONTEXT, *EXAMPLES]]
    assert len(set(ids)) == len(ids)


BEYOND_THE_SCHEMA = {
    "offset_out_of_range",  # each time's description: whole minutes within +-14:00
    "time_out_of_range",  # each time's description: 1970 up to 2100, in UTC
    "purpose_repeated",  # the policy's purposes: "each id once"
    "max_event_bytes",  # the Fact description
    "max_depth",  # the Fact description
    "int_type",  # the Fact description: 15.0 is not an age (JSON Schema's integer admits it)
}
"""Rules the validators check that JSON Schema cannot say; the schema's descriptions say them."""

TIMES = [
    "2026-05-01T09:00:00+09:00",
    "2026-05-01T09:00:00",
    "2026-05-01",
    "2026-05-01T09:00:00+14:30",
    "2026-05-01T09:00:00+05:30:30",
    "1969-12-31T23:00:00Z",
    "1969-12-31T23:30:00-01:00",
    "2100-01-01T00:30:00+01:00",
    "2099-12-31T23:30:00-01:00",
]


def changed(value: Any) -> st.SearchStrategy[Any]:
    """Values near ``value``: at and past the bounds a field of its kind may have, of another
    JSON type, or anything."""
    # JSON has no NaN or infinity: a body holding them is not JSON (400), never a fact.
    finite = st.floats(allow_nan=False, allow_infinity=False)
    # Nor integers past 64 bits: the server's JSON parser refuses them (400).
    integers = st.integers(min_value=-(2**63), max_value=2**64 - 1)
    anything = st.none() | st.booleans() | integers | finite | st.text(max_size=5)
    if isinstance(value, bool):
        return st.sampled_from([not value, "true", 1, None]) | anything
    if isinstance(value, int):
        near = [value - 1, value + 1, -1, 0, 21, 22, 60, 61, 150, 151, 2**31 - 1, 2**31]
        return st.sampled_from([*near, float(value), str(value)]) | anything
    if isinstance(value, str):
        edits = [
            "",
            value + "\n",
            value + "\t",
            value + "\r",
            "\x00" + value,
            value + "\x7f",
            "line\nbreak",
            value * 40,
            value.upper(),
            value.lower(),
            " " + value,
            value[:-1],
            "0",
            "1700000000",
            *TIMES,
        ]
        return st.sampled_from(edits) | anything
    if isinstance(value, list):
        grown = [*value, *value]
        return st.sampled_from([[], grown, value * 60, [*value, None], value[:1]]) | anything
    return st.sampled_from([{}, {"unknown": 1}]) | anything


@st.composite
def changed_facts(draw: st.DrawFn) -> dict[str, Any]:
    """An example fact with one field (or a field of a part of it) changed, removed or added."""
    original: dict[str, Any] = draw(st.sampled_from([*CONTEXT, *EXAMPLES]))
    fact: dict[str, Any] = copy.deepcopy(original)
    holder: Any = fact
    nested = [k for k, v in fact.items() if isinstance(v, dict | list) and v]
    inside: bool = draw(st.booleans())
    if nested and inside:
        inner = fact[draw(st.sampled_from(nested))]
        if isinstance(inner, list):
            index = draw(st.integers(0, len(inner) - 1))
            if not isinstance(inner[index], dict):
                inner[index] = draw(changed(inner[index]))
                return fact
            holder = inner[index]
        else:
            holder = inner
    keys = [k for k in holder if holder is not fact or k != "type"]
    action = draw(st.sampled_from(["change", "change", "change", "drop", "add"]))
    if action == "change" and keys:
        key = draw(st.sampled_from(keys))
        holder[key] = draw(changed(holder[key]))
    elif action == "drop" and keys:
        del holder[draw(st.sampled_from(keys))]
    else:
        holder[draw(st.sampled_from(["extra", "note", "age", "reason"]))] = draw(
            changed(draw(st.sampled_from(["x", 1, True, ["x"]])))
        )
    return fact


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fact=changed_facts())
def test_the_schema_says_what_the_validator_accepts(
    fact_schema: jsonschema_rs.Validator, fact: dict[str, Any]
) -> None:
    """A fact the validator accepts, the schema accepts; one the schema accepts, the validator
    accepts too, or refuses by a rule JSON Schema cannot say (the descriptions say it).

    jsonschema-rs reads ``pattern`` as OpenAPI does (ECMA 262: ``$`` is the end of the text, not
    also before a final line feed as in Python's ``re``)."""
    schema_says = fact_schema.is_valid(fact)
    try:
        parse_fact(fact)
    except ValidationError as exc:
        if schema_says:
            assert {p.rule for p in exc.problems} <= BEYOND_THE_SCHEMA, (fact, exc.problems)
        return
    assert schema_says, [str(e) for e in fact_schema.iter_errors(fact)]


@pytest.fixture(scope="module")
def fact_schema(document: dict[str, Any]) -> jsonschema_rs.Validator:
    return jsonschema_rs.validator_for(
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$ref": "#/components/schemas/Fact",
            "components": document["components"],
        },
        validate_formats=True,
    )


# -- security ------------------------------------------------------------------------------------


def test_every_operation_that_checks_a_token_names_its_scope(
    app: FastAPI, document: dict[str, Any]
) -> None:
    routes = {
        (path, method.lower()): route
        for path, route in api_routes(app.routes)
        for method in route.methods or ()
    }
    public = set()
    for path, method, operation in operations(document):
        scope = required_scope(routes[(path, method)])
        if scope is None:
            public.add(f"{method.upper()} {path}")
            assert SCOPE_KEY not in operation and "security" not in operation
            continue
        assert operation[SCOPE_KEY] == scope.value
        assert operation["security"] == [{BEARER: []}]
        assert {"401", "403"} <= set(operation["responses"])
    assert public == {"GET /healthz", "GET /readyz", "GET /v1/checkpoint", "GET /v1/keys"}
    assert document["paths"]["/v1/events"]["post"][SCOPE_KEY] == Scope.WRITE_EVENTS.value
    assert document["paths"]["/v1/events/{seq}"]["get"][SCOPE_KEY] == Scope.READ_HISTORY.value


def test_every_problem_answer_is_the_problem_schema(document: dict[str, Any]) -> None:
    """Every problem document the operations answer is the one ``Problem`` schema; the append's
    and the event's errors are all problem documents."""
    seen = 0
    for path, method, operation in operations(document):
        for status, answer in operation["responses"].items():
            if int(status) >= 400 and PROBLEM in answer["content"]:
                schema = answer["content"][PROBLEM]["schema"]
                # The Problem itself, or (allOf) the Problem with the members of this answer.
                assert PROBLEM_REF in [schema, *schema.get("allOf", [])], (method, path, status)
                seen += 1
            elif path.startswith("/v1/events"):
                assert int(status) < 400, (method, path, status)
    assert seen > 100
    problem = document["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "errors", "rule"} <= set(problem["properties"])
    assert document["components"]["schemas"]["FieldError"]["required"] == [
        "field",
        "rule",
        "detail",
    ]


# -- the signature header ------------------------------------------------------------------------


@given(body=st.binary(max_size=2000), seed=st.binary(min_size=32, max_size=32))
def test_a_real_signature_header_matches_the_documented_one(
    document: dict[str, Any], body: bytes, seed: bytes
) -> None:
    """The header a signing client sends (docs/api.md, Signed requests) fits the schema."""
    (schema,) = [
        p["schema"]
        for p in document["paths"]["/v1/events"]["post"]["parameters"]
        if p["in"] == "header" and p["name"].lower() == HEADER
    ]
    signature = SigningKey(seed).sign(body).signature
    header = "ed25519=" + base64.b64encode(signature).decode()
    assert re.search(schema["pattern"], header)
    assert not re.search(schema["pattern"], header[:-3] + "==")


@pytest.mark.parametrize("kind", [{}, [], 1, True, None])
def test_a_type_that_is_not_text_is_refused_not_a_server_error(kind: Any) -> None:
    """Schemathesis sent ``{"type": {}}``: an unhashable type was a 500 (TypeError)."""
    with pytest.raises(ValidationError) as refused:
        parse_fact({"type": kind, "event_id": "evt-1", "occurred_at": "2026-05-01T09:00:00Z"})
    (problem,) = refused.value.problems
    assert (problem.field, problem.rule) == ("type", "required" if kind is None else "type_unknown")


def test_a_scope_that_cannot_be_read_from_the_check_is_an_error_not_a_guess() -> None:
    async def unnamed(request: Request) -> None:
        scope = next(iter(Scope))
        await authorise(request, scope)

    async def two(
        _a: Annotated[object, Depends(authorised(Scope.READ_STATE))],
        _b: Annotated[object, Depends(authorised(Scope.READ_HISTORY))],
    ) -> None:
        return None

    async def one(_a: Annotated[object, Depends(authorised(Scope.READ_RECEIPTS))]) -> None:
        return None

    assert required_scope(APIRoute("/one", one)) == Scope.READ_RECEIPTS
    with pytest.raises(RuntimeError, match="without one Scope named"):
        required_scope(APIRoute("/unnamed", unnamed))
    with pytest.raises(RuntimeError, match="several scopes"):
        required_scope(APIRoute("/two", two))
