"""The response schemas (api/http/responses.py) against the examples the document shows, and the
statuses each operation lists (issue 17, part 1).

The examples of api/http/examples.py are whole answers: each validates against its model and
its schema in the OpenAPI document, and holds every key the model says is always there and
none it does not name. Every operation answers a 2xx with a schema that says something (JSON
of a named shape, or text), and lists no status its route cannot produce.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import BaseModel, TypeAdapter

from api.http import examples, responses
from api.http.app import create_app
from api.http.routes.exports import ExportRequest
from ledger.config import Settings

WHOLE_ANSWERS: list[tuple[str, Any, Any]] = [
    ("DECISION", examples.DECISION, responses.Decision),
    ("STATE", examples.STATE, responses.ConsentState),
    ("EVENT", examples.EVENT, responses.StoredEvent),
    ("DISCLOSURES", examples.DISCLOSURES, responses.DisclosurePage),
    ("REQUESTS", examples.REQUESTS, list[responses.DataSubjectRequest]),
    ("INCIDENT", examples.INCIDENT, responses.Incident),
    ("INCLUSION_PROOF", examples.INCLUSION_PROOF, responses.InclusionProof),
    ("CONSISTENCY_PROOF", examples.CONSISTENCY_PROOF, responses.ConsistencyProof),
    ("ENTRIES", examples.ENTRIES, responses.Entries),
    ("NOTICES", examples.NOTICES, responses.NoticeRegister),
    ("ACKNOWLEDGEMENT", examples.ACKNOWLEDGEMENT, responses.Acknowledgement),
    ("EXPORT_JOB", examples.EXPORT_JOB, responses.ExportJob),
    ("READINESS", examples.READINESS, responses.Readiness),
]
TEXT_ANSWERS = {
    "/v1/checkpoint": "text/plain",
    "/v1/keys": "text/plain",
    "/metrics": "text/plain",
    "/v1/exports/{job_id}/bundle": "application/zip",
}
"""The operations whose 2xx is not JSON, and its media type."""
WRITES_THAT_CONFLICT = {
    ("post", "/v1/events"),
    ("post", "/v1/incidents"),
    ("post", "/v1/notices/{notice_id}/ack"),
    ("get", "/v1/exports/{job_id}/bundle"),
}
"""409: an event id reused with other content, a notice acknowledged already, a bundle not
ready or failed. No other operation has a 409 to give."""
WAITS = {"/v1/consent/state", "/v1/consent/decision"}
"""The reads that take ``wait_for``, whose seq past the log's end is 422 (no body otherwise)."""


def objects(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from objects(item)


def always_there(model: type[BaseModel]) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items() if f.is_required()}


def named(model: type[BaseModel]) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data_dir: Path = tmp_path_factory.mktemp("openapi")
    found: dict[str, Any] = create_app(Settings(data_dir=data_dir)).openapi()
    return found


def schema_of(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with the document's components, so that its ``$ref``s resolve."""
    return {**schema, "components": document.get("components", {})}


@pytest.mark.parametrize(
    ("name", "value", "model"), WHOLE_ANSWERS, ids=[n for n, *_ in WHOLE_ANSWERS]
)
def test_each_example_is_a_whole_answer_of_its_model(name: str, value: Any, model: Any) -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(model)
    adapter.validate_python(value)
    jsonschema.validate(value, adapter.json_schema(mode="serialization", by_alias=True))
    top = model.__args__[0] if isinstance(value, list) else model
    for item in value if isinstance(value, list) else [value]:
        assert always_there(top) <= set(item), (name, always_there(top) - set(item))
        assert set(item) <= named(top), (name, set(item) - named(top))


def test_an_example_missing_a_key_or_of_the_wrong_type_fails() -> None:
    """The check above can fail: a key left out, or a value of another type."""
    missing = {k: v for k, v in examples.DECISION.items() if k != "answer"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(missing, responses.Decision.model_json_schema(mode="serialization"))
    wrong = dict(examples.DECISION, answer="maybe")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(wrong, responses.Decision.model_json_schema(mode="serialization"))


def test_every_example_in_the_document_validates_against_its_schema(
    document: dict[str, Any],
) -> None:
    checked = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                for media, content in answer.get("content", {}).items():
                    if "example" in content and "schema" in content:
                        where = f"{method.upper()} {path} {status} {media}"
                        try:
                            jsonschema.validate(
                                content["example"], schema_of(document, content["schema"])
                            )
                        except jsonschema.ValidationError as exc:
                            pytest.fail(f"{where}: {exc.message}")
                        checked += 1
    assert checked >= 20


def test_every_operation_answers_a_2xx_of_a_named_shape(document: dict[str, Any]) -> None:
    vague = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            ok = {s: a for s, a in operation["responses"].items() if s.startswith("2")}
            assert ok, f"{method} {path}: no 2xx"
            for status, answer in ok.items():
                content = answer.get("content", {})
                if path in TEXT_ANSWERS:
                    schema = content[TEXT_ANSWERS[path]]["schema"]
                    assert schema.get("type") == "string", (path, schema)
                    continue
                schema = content.get("application/json", {}).get("schema")
                if schema is None and status == "202" and path == "/v1/exports":
                    pytest.fail("POST /v1/exports: 202 without a schema")
                if not schema or schema in ({}, {"type": "object"}):
                    vague.append(f"{method.upper()} {path} {status}: {schema}")
    assert not vague


def test_no_operation_lists_a_status_its_route_cannot_produce(document: dict[str, Any]) -> None:
    wrong = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            statuses = {int(s) for s in operation["responses"]}
            where = f"{method.upper()} {path}"
            if 500 in statuses:
                wrong.append(f"{where}: 500 (the app never answers it)")
            if statuses & {408, 413} and method != "post":
                wrong.append(f"{where}: 408 or 413 without a body")
            if 409 in statuses and (method, path) not in WRITES_THAT_CONFLICT:
                wrong.append(f"{where}: 409")
            secured = bool(operation.get("security"))
            if secured != ({401, 403} <= statuses):
                wrong.append(f"{where}: 401/403 {'missing' if secured else 'without a token'}")
            if 421 in statuses and method != "post" and not path.startswith("/v1/exports"):
                wrong.append(f"{where}: 421 on a read a reads process serves")
            if 422 in statuses and "requestBody" not in operation and path not in WAITS:
                wrong.append(f"{where}: 422 without a body to refuse")
            if 400 not in statuses:  # every route refuses a repeated query parameter
                wrong.append(f"{where}: no 400")
    assert not wrong


def test_the_incident_route_documents_its_body_and_the_export_route_its_request(
    document: dict[str, Any],
) -> None:
    incidents = document["paths"]["/v1/incidents"]["post"]
    body = incidents["requestBody"]["content"]["application/json"]["schema"]
    assert body not in ({}, {"type": "object"})
    exports = document["paths"]["/v1/exports"]["post"]["requestBody"]
    ref = exports["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith(f"/{ExportRequest.__name__}")
