"""One set of conventions on every route (docs/api.md, "Conventions"; issue 17, part 4).

The parameter tests walk the app's own OpenAPI document, so a route added later is held to the
same shape without being listed here: a bad value for each query or path parameter, and each
parameter given twice, answer ``400`` ``application/problem+json`` whose first error names the
parameter (``query.x`` / ``path.x``) with a rule of the one vocabulary, and nothing answers
``5xx``. Then paging (a ``Link: rel="next"`` that keeps the whole query; CSV complete),
``Prefer: return=minimal`` on the write routes, and the three answers of a decision, over HTTP
and from the command line. Both backends.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from api.http.app import open_client_database
from api.token_store import Scope, SqlTokenStore
from ledger.config import Settings
from ledger.verifier.consent_rules import Policy, Verdict, declared_at, on_basis
from tests import facts
from tests.cli_runner import run_cli
from tests.integration.full_stack import Stack, full_stack

VOCABULARY = frozenset(
    {
        "required",
        "repeated",
        "not_an_integer",
        "not_a_boolean",
        "not_a_time",
        "time_without_offset",
        "offset_out_of_range",
        "time_out_of_range",
        "out_of_range",
        "too_long",
        "too_short",
        "control_character",
        "not_one_of",
        "malformed",
        "cursor_invalid",
    }
)
"""The rules a parameter problem may name (docs/api.md, "Conventions"): a new one fails here
until it is written down there."""
ROUTE_RULES = frozenset({"outside_tree", "sizes_reversed", "empty_range"})
"""Rules of the log routes about how two valid parameters relate (still 400, still named)."""
PROBLEM = "application/problem+json"
UUID = "00000000-0000-4000-8000-000000000000"
BASELINE = {
    "seq": "1",
    "incident_id": "inc-x",
    "subject": "user-1",
    "purpose": "marketing_email",
    "index": "0",
    "from": "0",
    "start": "0",
}
"""A valid value for each required parameter, so that the one under test is the one refused."""


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[Stack]:
    with full_stack(settings, tmp_path) as running:
        store = SqlTokenStore(open_client_database(settings))
        # Every scope: admin, and incidents:identify, which admin does not imply.
        running.tokens["every"] = store.add("every", [Scope.ADMIN, Scope.IDENTIFY_SUBJECTS])[1]
        store.db.close()
        yield running


# -- walking the OpenAPI document ---------------------------------------------------------------


def operations(stack: Stack) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """Every (method, path, parameters) of the app's OpenAPI document."""
    found = []
    for path, item in stack.app.openapi()["paths"].items():
        for method, operation in item.items():
            parameters = [
                p for p in operation.get("parameters", []) if p["in"] in ("query", "path")
            ]
            found.append((method.upper(), path, parameters))
    assert len(found) >= 20, found  # the document was read, not an empty one
    return found


def schema_of(parameter: dict[str, Any]) -> dict[str, Any]:
    """The parameter's schema, its ``null`` alternative (an optional parameter) left out."""
    schema: dict[str, Any] = parameter["schema"]
    for option in schema.get("anyOf", []):
        if option.get("type") != "null":
            return {**schema, **option}
    return schema


def valid(parameter: dict[str, Any]) -> str:
    schema = schema_of(parameter)
    if parameter["name"] in BASELINE:
        return BASELINE[parameter["name"]]
    if "enum" in schema:
        return str(schema["enum"][0])
    if "pattern" in schema:
        choices = re.fullmatch(r"\^\((\w+)\|.*\)\$", schema["pattern"])
        return choices.group(1) if choices else UUID
    return {
        "integer": str(schema.get("minimum", 1)),
        "boolean": "true",
    }.get(schema.get("type", ""), "2026-01-01T00:00:00Z" if schema.get("format") else "x")


def bad_values(parameter: dict[str, Any]) -> list[tuple[str, str]]:
    """Values the parameter must refuse, each with the rule it breaks."""
    schema = schema_of(parameter)
    kind, name = schema.get("type"), parameter["name"]
    if kind == "integer":
        return [
            ("abc", "not_an_integer"),
            ("1.5", "not_an_integer"),
            (str(schema.get("maximum", 2**63 - 1) + 1), "out_of_range"),
            (str(schema.get("minimum", 0) - 1), "out_of_range"),
        ]
    if kind == "boolean":
        return [("maybe", "not_a_boolean")]
    if schema.get("format") == "date-time":
        return [
            ("2026-06-01T10:00:00", "time_without_offset"),
            ("soon", "not_a_time"),
            ("1700000000", "not_a_time"),
        ]
    if "enum" in schema:
        return [("zzz", "not_one_of")]
    values: list[tuple[str, str]] = []
    if "maxLength" in schema:
        values.append(("x" * (schema["maxLength"] + 1), "too_long"))
    pattern = schema.get("pattern")
    if name == "cursor":
        values.append(("a\x00b", "cursor_invalid"))
    elif pattern is None:
        values.append(("a\x00b", "control_character"))
    else:
        alternatives = re.fullmatch(r"\^\((\w+(\|\w+)+)\)\$", pattern)
        values.append(("zz zz", "not_one_of" if alternatives else "malformed"))
    return values


def call(
    stack: Stack, method: str, path: str, values: dict[str, Any], query: list[tuple[str, str]]
) -> httpx.Response:
    """``method`` on ``path`` with its path ``values`` filled in and ``query`` as given."""
    target = path.format(**{k: quote(str(v), safe="") for k, v in values.items()})
    headers = {"Authorization": f"Bearer {stack.tokens['every']}"}
    if method == "GET":
        return stack.http.get(target, params=query, headers=headers)
    headers["Content-Type"] = "application/json"
    return stack.http.post(target, params=query, headers=headers, content=b"{}")


def request_with(
    stack: Stack,
    method: str,
    path: str,
    parameters: list[dict[str, Any]],
    changed: dict[str, str],
    extra: list[tuple[str, str]] = (),  # type: ignore[assignment]
) -> httpx.Response:
    """The operation with every required parameter valid, ``changed`` ones replaced."""
    values = {p["name"]: valid(p) for p in parameters if p.get("required")}
    values.update(changed)
    in_path = {p["name"] for p in parameters if p["in"] == "path"}
    query = [(k, v) for k, v in values.items() if k not in in_path]
    return call(stack, method, path, {k: values[k] for k in in_path}, [*query, *extra])


def shape(response: httpx.Response) -> tuple[int, str, str, str]:
    """(status, content type, first error's field, its rule)."""
    body = response.json()
    [first, *_] = body.get("errors") or [{"field": "", "rule": ""}]
    return (
        response.status_code,
        response.headers["content-type"],
        first["field"],
        first["rule"],
    )


def test_a_bad_value_of_any_parameter_is_the_one_problem_shape(stack: Stack) -> None:
    wrong, tried = [], 0
    for method, path, parameters in operations(stack):
        for parameter in parameters:
            field = f"{parameter['in']}.{parameter['name']}"
            for value, rule in bad_values(parameter):
                tried += 1
                response = request_with(stack, method, path, parameters, {parameter["name"]: value})
                got = shape(response)
                if got != (400, PROBLEM, field, rule) or rule not in VOCABULARY:
                    wrong.append((method, path, field, value[:20], got))
    assert tried > 50
    assert not wrong, "\n".join(map(str, wrong))


def test_every_parameter_and_every_route_refuses_a_repeat(stack: Stack) -> None:
    wrong = []
    for method, path, parameters in operations(stack):
        queried = [p for p in parameters if p["in"] == "query"]
        # Routes without query parameters refuse a repeated one too (the lean append included).
        repeats = [(p["name"], valid(p)) for p in queried] or [("x", "1")]
        for name, value in repeats:
            response = request_with(stack, method, path, parameters, {}, [(name, value)] * 2)
            if shape(response) != (400, PROBLEM, f"query.{name}", "repeated"):
                wrong.append((method, path, name, response.status_code, response.text[:200]))
    assert not wrong, "\n".join(map(str, wrong))


@hypothesis_settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_no_value_of_any_parameter_is_a_server_error(stack: Stack, data: st.DataObject) -> None:
    method, path, parameters = data.draw(
        st.sampled_from([o for o in operations(stack) if o[2]]), label="operation"
    )
    parameter = data.draw(st.sampled_from(parameters), label="parameter")
    value = data.draw(
        st.one_of(
            st.text(max_size=40),
            st.integers().map(str),
            st.sampled_from(["", " ", "-0", "+1", "1e3", "0x10", "\uff12", "null", "true", "\x7f"]),
        ),
        label="value",
    )
    if parameter["in"] == "path" and value in ("", ".", ".."):
        return  # another path (or none), not this parameter
    response = request_with(stack, method, path, parameters, {parameter["name"]: value})
    # Never an internal error; a 503 is a deliberate answer (this stack runs no notice service).
    assert response.status_code != 500, response.text
    assert response.status_code < 400 or response.headers["content-type"] == PROBLEM
    if response.status_code == 400:
        _, content_type, field, rule = shape(response)
        assert content_type == PROBLEM
        assert field == f"{parameter['in']}.{parameter['name']}", response.text
        assert rule in VOCABULARY | ROUTE_RULES, response.text


# -- paging -------------------------------------------------------------------------------------


def follow(stack: Stack, path: str, **params: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """Every item of every page from ``path``, following ``Link: rel="next"``; the links."""
    items: list[dict[str, Any]] = []
    links: list[str] = []
    response = stack.get(path, **params)
    while True:
        assert response.status_code == 200, response.text
        items += response.json()["items"]
        following = response.links.get("next")
        if following is None:
            return items, links
        links.append(following["url"])
        response = stack.http.get(following["url"], headers=stack._headers("admin"))


def disclosed(stack: Stack) -> tuple[str, str, list[str]]:
    """Two recipients, three disclosures each, interleaved: (first, second, subjects)."""
    pol = facts.policy()
    first, second = facts.ref("rcpt"), facts.ref("rcpt")
    subjects = [facts.ref("user") for _ in range(3)]
    batch = [pol, facts.recipient(first), facts.recipient(second)]
    for subject in subjects:
        batch.append(facts.consent(subject, pol["version"]))
        for recipient in (first, second):
            batch.append(facts.disclosure(recipient, [subject], pol["version"]))
    assert stack.record(batch).status_code == 201
    stack.process()
    return first, second, subjects


def test_following_next_keeps_the_whole_query(stack: Stack) -> None:
    first, second, _ = disclosed(stack)
    rows, links = follow(stack, "/v1/disclosures", recipient=first, limit=1)
    # The bug it would have caught: the next page of ?recipient=X held other recipients' rows.
    assert [row["recipient_id"] for row in rows] == [first] * 3
    assert len(links) == 3 and all(
        f"recipient={first}" in link and "limit=1" in link for link in links
    )
    everyone, _ = follow(stack, "/v1/disclosures", limit=2)
    assert sorted(row["recipient_id"] for row in everyone) == sorted([first, second] * 3)


def test_entries_link_to_the_next_page_keeping_the_query(stack: Stack) -> None:
    for _ in range(2):  # 1,001 entries: more than one answer holds
        batch = [facts.recipient() for _ in range(500)]
        assert stack.record(batch).status_code == 201
    assert stack.record([facts.recipient()]).status_code == 201
    head = stack.ledger.head()
    assert head == 1001
    first = stack.get("/v1/entries", start=0, end=head)
    assert len(first.json()["entries"]) == 1000 and first.json()["next"] == 1000
    following = httpx.URL(first.links["next"]["url"])
    assert (following.path, dict(following.params)) == (
        "/v1/entries",
        {"start": "1000", "end": "1001"},
    )
    last = stack.http.get(str(following), headers=stack._headers("admin"))
    assert [e["index"] for e in last.json()["entries"]] == [1000]
    assert "next" not in last.links  # end reached
    # Without end: no link past the log's end either (nothing to follow yet).
    assert "next" not in stack.get("/v1/entries", start=1000).links


def test_csv_is_every_row_not_a_page(stack: Stack) -> None:
    first, _, _ = disclosed(stack)
    whole = stack.get("/v1/disclosures", recipient=first, format="csv", limit=1)
    assert whole.status_code == 200 and whole.headers["content-type"].startswith("text/csv")
    assert "link" not in whole.headers
    rows = list(csv.DictReader(io.StringIO(whole.text)))
    assert [row["recipient_id"] for row in rows] == [first] * 3  # every page, filter kept
    assert {row["violation"] for row in rows} <= {"true", "false"}  # as the bundles write them
    assert {row["de_identified"] for row in rows} == {"false"}
    everything = stack.get("/v1/disclosures", format="csv", limit=2)
    assert len(list(csv.DictReader(io.StringIO(everything.text)))) == 6
    nothing = stack.get("/v1/disclosures", recipient="nobody", format="csv")
    assert nothing.text.startswith("seq,subject,") and nothing.text.count("\n") == 1


# -- Prefer: return=minimal ---------------------------------------------------------------------


def test_every_write_route_honours_return_minimal(stack: Stack) -> None:
    headers = {
        "Authorization": f"Bearer {stack.tokens['every']}",
        "Content-Type": "application/json",
        "Prefer": "respond-async, return=minimal",
    }
    pol = facts.policy()
    event = stack.http.post("/v1/events", content=orjson.dumps(pol), headers=headers)
    assert event.status_code == 201 and event.json() == {"seq": stack.ledger.head()}
    assert event.headers["preference-applied"] == "return=minimal"
    opened = [facts.incident(), facts.incident()]
    incident = stack.http.post("/v1/incidents", content=orjson.dumps(opened), headers=headers)
    assert incident.status_code == 201, incident.text
    assert incident.json() == {"seqs": [stack.ledger.head() - 1, stack.ledger.head()]}
    assert incident.headers["preference-applied"] == "return=minimal"
    body = {"scope": {"kind": "all"}, "purpose": "a regulator asked"}
    export = stack.http.post("/v1/exports", content=orjson.dumps(body), headers=headers)
    assert export.status_code == 202 and export.content == b""
    assert export.headers["preference-applied"] == "return=minimal"
    assert stack.get(export.headers["location"]).json()["purpose"] == "a regulator asked"
    # Without the preference: the whole receipt, and no Preference-Applied.
    del headers["Prefer"]
    full = stack.http.post("/v1/events", content=orjson.dumps(facts.policy()), headers=headers)
    assert "event_hash" in full.json() and "preference-applied" not in full.headers


# -- decisions: yes, no, not required, unknown ---------------------------------------------------


def test_a_decision_tells_its_three_answers_and_an_unknown_purpose_apart(stack: Stack) -> None:
    pol = facts.policy()
    subject = facts.ref("user")
    given = facts.consent(subject, pol["version"])
    withdrawn = facts.consent(subject, pol["version"], kind="withdrawn", occurred_at=facts.now())
    assert stack.record([pol, given]).status_code == 201
    stack.process()
    yes = stack.ok("/v1/consent/decision", subject=subject, purpose="marketing_email")
    assert (yes["allowed"], yes["answer"], yes["legal_basis"]) == (True, "yes", "consent")
    assert stack.record([withdrawn]).status_code == 201
    stack.process()
    no = stack.ok("/v1/consent/decision", subject=subject, purpose="marketing_email")
    assert (no["allowed"], no["answer"], no["status"]) == (False, "no", "withdrawn")
    assert no["decided_by_seq"] == stack.ledger.head()  # the withdrawal decides
    never = stack.ok("/v1/consent/decision", subject=facts.ref("user"), purpose="usage_analytics")
    assert (never["answer"], never["status"], never["decided_by_seq"]) == ("no", None, None)
    contract = stack.ok("/v1/consent/decision", subject=subject, purpose="service_provision")
    assert contract["answer"] == "not_required" and contract["allowed"] is True
    assert contract["legal_basis"] == "contract"
    assert contract["policy_version"] == pol["version"] and contract["status"] is None
    unknown = stack.get("/v1/consent/decision", subject=subject, purpose="telepathy")
    assert unknown.status_code == 404 and unknown.headers["content-type"] == PROBLEM
    problem = unknown.json()
    assert problem["errors"][0]["field"] == "query.purpose"
    assert problem["errors"][0]["rule"] == "unknown_purpose"
    assert problem["purpose"] == "telepathy" and problem["policy_versions"] == [pol["version"]]
    assert "telepathy" in problem["detail"] and pol["version"] in problem["detail"]


def test_erased_is_no_whatever_the_basis_and_the_basis_is_the_version_in_effect() -> None:
    old = Policy("v1", "2026-01-01T00:00:00.000000Z", False, None, 1, bases={"p": "consent"})
    new = Policy("v2", "2026-06-01T00:00:00.000000Z", False, None, 2, bases={"p": "contract"})
    policies = {"v1": old, "v2": new}
    assert declared_at(policies, "p", "2026-03-01T00:00:00.000000Z") == old
    assert declared_at(policies, "p", "2026-07-01T00:00:00.000000Z") == new
    assert declared_at(policies, "p", "2025-01-01T00:00:00.000000Z") == old  # none in effect yet
    assert declared_at(policies, "q", "2026-07-01T00:00:00.000000Z") is None
    never = Verdict(False, None, None, None, None)
    assert on_basis(never, old, "p") == never
    rebased = on_basis(never, new, "p")
    assert (rebased.outcome, rebased.valid, rebased.basis, rebased.seq) == (
        "not_required",
        True,
        "contract",
        2,
    )
    erased = Verdict(False, "erased", 9, None, "2026-06-02T00:00:00.000000Z")
    assert on_basis(erased, new, "p").outcome == "no"
    assert on_basis(erased, new, "p").answer("s", "p")["legal_basis"] == "contract"


def test_the_command_line_exit_status_follows_the_answer(settings: Settings) -> None:
    pol = facts.policy()
    subject = facts.ref("user")
    lines = "\n".join(
        orjson.dumps(f).decode() for f in (pol, facts.consent(subject, pol["version"]))
    )
    assert run_cli(settings, "import", "-", stdin=lines).exit_code == 0
    for purpose, status, answer in (
        ("marketing_email", 0, "yes"),
        ("usage_analytics", 3, "no"),
        ("service_provision", 4, "not_required"),
    ):
        result = run_cli(settings, "consent", "check", subject, purpose)
        assert result.exit_code == status, result.output
        assert orjson.loads(result.output)["answer"] == answer
    unknown = run_cli(settings, "consent", "check", subject, "telepathy")
    assert unknown.exit_code == 5
    assert "telepathy" in unknown.output and pol["version"] in unknown.output


# -- the command line ---------------------------------------------------------------------------


def test_the_command_line_writes_scopes_as_text_and_csv_as_the_api(
    settings: Settings, tmp_path: Path
) -> None:
    pol = facts.policy()
    recipient, subject = facts.ref("rcpt"), facts.ref("user")
    batch = [
        pol,
        facts.recipient(recipient),
        facts.consent(subject, pol["version"]),
        facts.disclosure(recipient, [subject], pol["version"]),
    ]
    lines = "\n".join(orjson.dumps(f).decode() for f in batch)
    assert run_cli(settings, "import", "-", stdin=lines).exit_code == 0
    out = tmp_path / "bundle"
    exported = run_cli(settings, "export", "--recipient", recipient, "--out", str(out))
    assert exported.exit_code == 0, exported.output
    assert f"events of recipient {recipient} with" in exported.output
    assert "{" not in exported.output.splitlines()[-2]  # no dict repr of the scope
    as_csv = run_cli(settings, "disclosures", "--recipient", recipient, "--csv")
    assert as_csv.exit_code == 0, as_csv.output
    [row] = list(csv.DictReader(io.StringIO(as_csv.output)))
    assert (row["violation"], row["de_identified"], row["recipient_id"]) == (
        "false",
        "false",
        recipient,
    )
    nothing = run_cli(settings, "disclosures", "--recipient", "nobody", "--csv")
    assert nothing.output.startswith("seq,subject,") and nothing.output.count("\n") == 1
