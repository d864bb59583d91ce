"""What the routes answer, as pydantic models: the OpenAPI document's response schemas.

Documentation only. The routes build their answers as they always have (dictionaries from the
query layer, encoded as JSON) and do not validate them against these models, which would cost
time on every answer and could change what is sent; instead ``tests/integration/
test_response_schemas.py`` asks every route of a ledger holding examples/events.jsonl and checks
each answer against the document's schema, keys exactly, and ``tests/unit/api/
test_response_models.py`` checks every example of api/http/examples.py against its model.

A field without a default is always in the answer, ``null`` when it has no value; a field with
a default (``None``) is left out of some answers (the field's description says when). Times are
RFC 3339 in UTC with microseconds, as stored (``2026-04-01T22:45:19.000000Z``). Subjects are
pseudonyms (UUIDs): an answer never holds an emitter's reference unless it says it opens one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.http.problems import documented
from ledger.notices import NoticeReason
from ledger.verifier.consent_rules import DPV_STATUS
from ledger.verifier.incident_rules import STATUSES as INCIDENT_STATUSES
from ledger.verifier.receipt import DPV_STATUS as RECEIPT_DPV
from ledger.verifier.receipt import RECEIPT_FORMAT
from ledger.verifier.request_rules import CLOSING, OPEN_STATUSES
from ledger.verifier.verdicts import VERDICTS
from ledger.vocabulary import LegalBasis, RequestKind, RiskLevel

JSON = "application/json"
JSONLD = "application/ld+json"
CSV = "text/csv"
TEXT = "text/plain"


def _enum(values: Iterable[str], description: str) -> Any:
    """A text field whose values are ``values`` (from the code that makes them: no copy)."""
    return Field(description=description, json_schema_extra={"enum": list(values)})


Time = Annotated[str, Field(json_schema_extra={"format": "date-time"}, description="RFC 3339, UTC")]
Pseudonym = Annotated[str, Field(description="A subject's pseudonym (a UUID)")]
Seq = Annotated[int, Field(ge=1, description="An event's sequence number in the log")]
Base64 = Annotated[str, Field(description="Base64 (RFC 4648, with padding)")]


class _Answer(BaseModel):
    """An answer's object: what it always holds is required; more may be added later."""

    model_config = ConfigDict(populate_by_name=True)


# -- consent -------------------------------------------------------------------------------------

RECEIPT_TYPES = [*RECEIPT_DPV]
"""The consent facts a receipt is made for."""
RECEIPT_STATUSES = sorted(set(RECEIPT_DPV.values()))
CONSENT_STATUSES = [*DPV_STATUS]
"""The statuses a purpose can be in (``null``: no decision was ever recorded on it)."""


class Decision(_Answer):
    """May this purpose be used for this subject, now or at the moment asked about?"""

    subject: Pseudonym
    purpose: str
    allowed: bool = Field(description="`true` for `yes` and `not_required`")
    answer: Literal["yes", "no", "not_required"] = Field(
        description="`yes`: valid consent; `no`: no valid consent (`status` says why); "
        "`not_required`: the policy version in effect declares another legal basis"
    )
    legal_basis: str = _enum(
        [b.value for b in LegalBasis], "What the purpose rests on (`consent` for yes and no)"
    )
    status: str | None = Field(
        description="Why: one of "
        + ", ".join(f"`{s}`" for s in CONSENT_STATUSES)
        + "; `null` when no decision was ever recorded, and for `not_required`",
        json_schema_extra={"enum": [*CONSENT_STATUSES, None]},
    )
    dpv_status: str | None = Field(description="The status as a W3C DPV term")
    decided_by_seq: int | None = Field(
        description="The deciding event: the consent, the withdrawal, the policy version..."
    )
    policy_version: str | None
    since: Time | None = Field(description="Since when this answer holds")


class PendingRenewal(_Answer):
    """The latest ``consent.renewal_requested`` on the purpose not yet answered by a decision."""

    seq: Seq
    since: Time
    policy_version: str
    reason: str
    channel: str
    respond_by: Time | None


class PurposeState(_Answer):
    purpose: str
    status: str | None = Field(json_schema_extra={"enum": [*CONSENT_STATUSES, None]})
    dpv_status: str | None
    valid: bool
    policy_version: str | None
    since: Time | None
    decided_by_seq: int | None
    pending_renewal: PendingRenewal | None = Field(
        description="A renewal asked for and not answered yet; it changes no status"
    )


class Erasure(_Answer):
    seq: Seq
    erased_at: Time
    ground: str


class ConsentState(_Answer):
    """Every purpose the subject decided on, as it stands at the moment asked about."""

    subject: Pseudonym
    erased: Erasure | None = Field(description="The subject's erasure, if they were erased")
    purposes: list[PurposeState]


# -- events, histories and receipts -------------------------------------------------------------


class Emitter(_Answer):
    """The signature of the request that carried the event (a client that signs)."""

    client: str
    key_id: str
    body_sha256: str = Field(description="SHA-256 of the request body, hex")
    signature: Base64


class StoredEvent(_Answer):
    """A stored event, its personal data opened (or `[erased]`, or `[another subject]`)."""

    seq: Seq
    type: str
    type_version: int
    stream: str
    stream_version: int
    event_id: str | None
    occurred_at: Time
    recorded_at: Time
    backdated: bool
    data: dict[str, Any] = Field(description="The fact's fields (docs/events.md)")
    event_hash: str = Field(description="SHA-256 of the signed entry, hex")
    signature: Base64
    key_id: str
    emitter: Emitter | None


class SubjectHistory(_Answer):
    subject: Pseudonym
    events: list[StoredEvent] = Field(description="In log order")


class Receipt(_Answer):
    """What the ledger gives for an event it recorded, after the commit."""

    seq: Seq
    leaf_index: int = Field(ge=0, description="`seq - 1`: the event's leaf in the Merkle tree")
    event_id: str
    event_hash: str = Field(description="SHA-256 of the signed entry, hex")
    signature: Base64
    key_id: str
    recorded_at: Time
    duplicate: bool = Field(description="Recorded before with the same content (a resend)")


class Receipts(_Answer):
    """The receipts of a batch, in its order."""

    receipts: list[Receipt]


class MinimalReceipt(_Answer):
    """`Prefer: return=minimal`, one event: its sequence number only."""

    seq: Seq


class MinimalReceipts(_Answer):
    """`Prefer: return=minimal`, a batch: the sequence numbers, in its order."""

    seqs: list[Seq]


# -- registers ------------------------------------------------------------------------------------


class Disclosure(_Answer):
    """One subject's share of one disclosure, with its verdict."""

    seq: Seq
    subject: Pseudonym
    disclosure_id: str
    occurred_at: Time
    recipient_id: str
    recipient_name: str | None
    recipient_role: str | None
    recipient_country: str | None
    kind: str
    data_categories: list[str]
    purpose: str
    legal_basis: str
    de_identified: bool
    destination_country: str
    policy_version: str
    verdict: str = _enum(VERDICTS, "Lawful or not, and why")
    violation: bool
    consent_seq: int | None = Field(description="The consent the verdict rests on, if any")


class DisclosurePage(_Answer):
    items: list[Disclosure]
    next_cursor: str | None = Field(
        description="Give it as `cursor` for the next page; `null` on the last"
    )


class DataSubjectRequest(_Answer):
    """A data-subject request (GDPR 12-22) as the register holds it, due date computed now."""

    request_id: str
    subject: Pseudonym
    kind: str = _enum([k.value for k in RequestKind], "What was asked")
    channel: str
    jurisdiction: str | None
    received_at: Time
    received_seq: Seq
    identity_verified_at: Time | None
    identity_verified_seq: int | None
    extension_days: int = Field(description="The days of every extension, together")
    extensions: int
    status: str = _enum(
        [*OPEN_STATUSES, *CLOSING.values()], "Open (`received`, `identity_verified`) or not"
    )
    closed_at: Time | None
    closed_seq: int | None
    refusal_ground: str | None
    last_seq: Seq
    due_at: Time
    overdue: bool = Field(description="Still open, and past its due date")
    answered_late: bool = Field(description="Closed after its due date")
    days_left: int | None = Field(
        description="Whole days until the due date (negative once overdue); `null` once closed"
    )


class IncidentRule(_Answer):
    """The assessment's rule: the subjects disclosed to this recipient in this window."""

    recipient_id: str
    disclosed_from: Time
    disclosed_to: Time


class Nature(_Answer):
    summary: str | None
    data_categories: list[str]
    approximate_subject_count: int | None
    affected_subject_count: int


class Article33(_Answer):
    """GDPR 33(3): what a notification to the authority must contain, as known so far."""

    nature: Nature
    dpo_contact: str | None
    likely_consequences: str | None
    measures: str | None
    missing: list[str] = Field(description="The contents not recorded yet")


class Incident(_Answer):
    """An incident as the register holds it, deadlines computed now."""

    incident_id: str
    opened_seq: Seq
    detected_at: Time
    summary: str
    recipient_id: str | None
    status: str = _enum(INCIDENT_STATUSES, "How far the incident got")
    risk: str | None = Field(json_schema_extra={"enum": [*(r.value for r in RiskLevel), None]})
    data_categories: list[str]
    likely_consequences: str | None
    affected_rule: IncidentRule | None
    approximate_subject_count: int | None
    assessed_at: Time | None
    assessed_seq: int | None
    contained_at: Time | None
    contained_seq: int | None
    measures: str | None
    authority_notified_at: Time | None
    authority_notified_seq: int | None
    authority: str | None
    authority_reference: str | None
    dpo_contact: str | None
    delay_reason: str | None
    subjects_notified_at: Time | None
    subjects_notified_seq: int | None
    subjects_notified_channel: str | None
    subjects_notified_count: int | None
    closed_at: Time | None
    closed_seq: int | None
    resolution: str | None
    last_seq: Seq
    affected_subjects: list[Pseudonym] = Field(description="Named by an assessment")
    authority_deadline: Time = Field(description="72 hours after detection (GDPR 33(1))")
    authority_overdue: bool
    authority_notified_late: bool
    subjects_notification_due: bool = Field(description="High risk, subjects not told yet")
    article_33_3: Article33
    affected_subject_count: int = Field(description="Named or selected by the rule, each once")
    subjects_by_rule: list[Pseudonym] | None = Field(
        default=None,
        description="The subjects the assessment's rule selects; present only with a rule",
    )


class AffectedPerson(_Answer):
    subject: Pseudonym
    named: bool = Field(description="An assessment names them")
    by_rule: bool = Field(description="The assessment's rule selects one of their disclosures")
    subject_ref: str = Field(description="Their reference, opened; `[erased]` once erased")
    contact: str | None = Field(description="The contact data of their latest consent fact")
    erased: bool


class AffectedPeoplePage(_Answer):
    incident_id: str
    total: int = Field(description="Everyone the incident affects, over every page")
    items: list[AffectedPerson] = Field(description="In pseudonym order")
    next_cursor: str | None
    access_seq: Seq = Field(description="The `personal_data.accessed` event of this page")


class Notice(_Answer):
    """A notice owed to a recipient (GDPR 19): no pseudonym, no reference."""

    notice_id: str
    recipient_id: str
    reason: str = _enum([r.value for r in NoticeReason], "Why the recipient is told")
    cause_seq: Seq
    purposes: list[str]
    disclosure_seqs: list[int]
    due_seq: int | None
    due_at: Time | None
    attempts: int
    next_attempt_at: Time | None
    last_error: str | None
    delivered_at: Time | None
    notified_seq: int | None
    acknowledged_seq: int | None
    acknowledged_at: Time | None
    overdue: bool
    transport: str | None = Field(description="How it was delivered: `webhook` or `amqp`")
    acknowledged_via: str | None = Field(
        description="How it was acknowledged: `api` or `webhook_reply`"
    )


class NoticeRegister(_Answer):
    overdue_after_hours: float
    notices: list[Notice]


class AckReceipt(_Answer):
    seq: Seq
    event_hash: str
    signature: Base64
    key_id: str


class Acknowledgement(_Answer):
    notice_id: str
    acknowledged_seq: Seq
    acknowledged_at: Time
    receipt: AckReceipt


# -- exports --------------------------------------------------------------------------------------


class ExportProgress(_Answer):
    phase: str | None = Field(description="`leaves`, `entries`, then `verify`")
    done: int | None
    total: int | None


class ExportLinks(_Answer):
    self_: str = Field(alias="self")
    bundle: str | None = Field(default=None, description="Once the job is done")


class Citation(_Answer):
    """What the `request.fulfilled` that answers the access request cites."""

    request_id: str
    bundle_manifest_sha256: str | None


class JobSubject(_Answer):
    kind: Literal["subject"]
    subject: Pseudonym


class JobRecipient(_Answer):
    kind: Literal["recipient"]
    recipient_id: str


class JobIncident(_Answer):
    kind: Literal["incident"]
    incident_id: str


class JobPeriod(_Answer):
    kind: Literal["period"]
    from_: Time = Field(alias="from")
    to: Time = Field(description="Excluded")


class JobWholeLog(_Answer):
    kind: Literal["all"]


class ExportJob(_Answer):
    id: str = Field(description="The job's id (a UUID)")
    state: Literal["queued", "running", "done", "failed", "expired"]
    scope: JobSubject | JobRecipient | JobIncident | JobPeriod | JobWholeLog = Field(
        discriminator="kind",
        description="As the bundle's manifest names it: a subject by pseudonym",
    )
    purpose: str
    answers_request: str | None
    progress: ExportProgress
    attempts: int
    created_at: Time
    started_at: Time | None
    finished_at: Time | None
    expires_at: Time | None
    manifest_sha256: str | None = Field(description="SHA-256 of the bundle's manifest.json")
    bytes: int | None
    checkpoint_size: int | None
    entries: int | None
    failure: str | None
    links: ExportLinks
    cite: Citation | None = Field(
        default=None, description="Once done, when the job answers an access request"
    )


# -- the log --------------------------------------------------------------------------------------


class InclusionProof(_Answer):
    index: int = Field(ge=0)
    size: int = Field(ge=1)
    leaf_hash: Base64
    proof: list[Base64] = Field(description="RFC 9162 §2.1.3, bottom-up")
    checkpoint: str | None = Field(
        default=None, description="The latest checkpoint's signed note; only without `size`"
    )


class ConsistencyProof(_Answer):
    from_: int = Field(alias="from", ge=0)
    to: int = Field(ge=0)
    proof: list[Base64] = Field(description="RFC 9162 §2.1.4; empty when from is 0 or to")
    checkpoint: str | None = Field(
        default=None, description="The latest checkpoint's signed note; only without `to`"
    )


class Entry(_Answer):
    index: int = Field(ge=0)
    entry: Base64 = Field(description="The leaf input: the signed binary entry")
    body: Base64 = Field(description="The bytes whose SHA-256 the entry holds")
    signature: Base64
    key_id: str


class Entries(_Answer):
    entries: list[Entry]
    next: int | None = Field(description="The index to ask for next; `null` once `end` is reached")


class Health(_Answer):
    status: Literal["ok"]


class StoppedReadModel(_Answer):
    read_model: str
    message: str
    position: int
    seq: int | None = None
    event_type: str | None = None
    error: str | None = None
    since: Time | None = None
    last_attempt: Time | None = None
    attempts: int | None = None


class Readiness(_Answer):
    status: Literal["ready", "degraded"]
    head: int = Field(ge=0, description="The log's length")
    failed: list[StoppedReadModel] | None = Field(
        default=None, description="Only when degraded: each read model stopped at an event"
    )


# -- consent receipts -----------------------------------------------------------------------------


class ReceiptProof(_Answer):
    seq: Seq
    leaf_index: int
    key_id: str
    entry: Base64
    signature: Base64
    body: Base64
    leaf_hash: Base64
    tree_size: int
    inclusion_proof: list[Base64]
    checkpoint: str = Field(description="A C2SP signed note holding the entry")


class ReceiptEvent(_Answer):
    """The consent fact the receipt is of, restated from its signed body."""

    type: str = _enum(RECEIPT_TYPES, "The consent fact's type")
    event_id: str
    time: Time = Field(description="When it happened (`occurred_at`)")
    recorded_at: Time
    backdated: bool
    by: Literal["pii_principal", "guardian", "pii_controller"]
    collection_method: str | None = Field(
        default=None, description="How it was collected; not on a renewal request"
    )
    expires_at: Time | None = Field(default=None, description="`consent.given` only")
    channel: str | None = Field(default=None, description="A renewal request only")
    reason: str | None = Field(default=None, description="A renewal request only")
    respond_by: Time | None = Field(default=None, description="A renewal request only")


class ReceiptNotice(_Answer):
    policy_version: str | None
    notice_id: str | None = Field(default=None, description="When the evidence names it")
    form_id: str | None = Field(default=None, description="When the evidence names it")
    notice_digest: str | None = Field(default=None, description="When the evidence names it")


class Processing(_Answer):
    purposes: list[str]
    legal_basis: Literal["dpv:Consent"]


class Controller(_Answer):
    log_origin: str = Field(description="The ledger's log origin: its only name for itself")


class ConsentRecord(_Answer):
    """The ISO/IEC TS 27560 consent record, restated from the signed body."""

    schema_version: str
    record_id: str = Field(description="The entry's hash, hex")
    pii_principal_id: str | None = Field(description="The subject's reference, opened")
    pii_principal_pseudonym: str | None
    pii_controller: Controller
    consent_status: str = _enum(RECEIPT_STATUSES, "The status as a W3C DPV term")
    event: ReceiptEvent
    notice: ReceiptNotice
    processing: Processing
    personal_data: dict[str, str] = Field(
        description="The subject's own values, opened, by their path in the body"
    )


class KantaraPurpose(_Answer):
    purpose: str
    termination: Time | None = Field(default=None, description="When the consent expires")


class KantaraService(_Answer):
    service: str
    purposes: list[KantaraPurpose]


class KantaraController(_Answer):
    pii_controller: str = Field(alias="piiController")


class Kantara(_Answer):
    """The Kantara Consent Receipt v1.1 fields that map."""

    version: str
    receipt_id: str = Field(alias="consentReceiptID")
    timestamp: int = Field(alias="consentTimestamp", description="Seconds since the Unix epoch")
    collection_method: str | None = Field(alias="collectionMethod")
    pii_principal_id: str | None = Field(alias="piiPrincipalId")
    pii_controllers: list[KantaraController] = Field(alias="piiControllers")
    services: list[KantaraService]


class ConsentReceipt(_Answer):
    """A consent receipt (docs/verification.md, "Checking a consent receipt")."""

    format: Literal["consent-ledger-consent-receipt/1"] = Field(description=RECEIPT_FORMAT)
    record: ConsentRecord
    kantara: Kantara
    gaps: dict[str, str] = Field(description="Mandatory fields left out, and why")
    proof: ReceiptProof
    statement: str = Field(description="The ledger's signed note over everything above")


class DpvConsentRecord(_Answer):
    """The receipt as a W3C DPV JSON-LD document; `ledger:receipt` carries the receipt."""

    context: dict[str, str] = Field(alias="@context")
    id: str = Field(alias="@id")
    type: Literal["dpv:ConsentRecord"] = Field(alias="@type")
    receipt: dict[str, Any] = Field(
        alias="ledger:receipt", description='`{"@type": "@json", "@value": <receipt>}`'
    )


# -- what some problems say beyond the problem document -----------------------------------------


class UnknownPurpose(_Answer):
    """`404` `unknown_purpose` of a decision: what the ledger does know."""

    purpose: str
    policy_versions: list[str] = Field(description="The published versions, in effect order")
    known_purposes: list[str] = Field(description="Every purpose some version declares")


class ReadModelStopped(_Answer):
    """`503` `Read model stopped`: which read model, at which event, and why."""

    read_model: str
    seq: Seq
    event_type: str
    error: str = Field(description="The error's class")
    message: str
    since: Time
    last_attempt: Time
    attempts: int


class BeyondLog(_Answer):
    """`404` `beyond_log`: how many entries the log holds."""

    log_size: int = Field(ge=0)


class NotReady(_Answer):
    """`503` of `/readyz` when read models lag (absent when storage does not answer)."""

    failed: list[dict[str, Any]] | None = Field(
        default=None, description="Each read model stopped at an event, as in `Readiness`"
    )
    lagging: list[str] | None = Field(
        default=None, description="The read models too far behind the head"
    )


# -- how routes attach them ----------------------------------------------------------------------

_SHOWN: list[Any] = []
"""Every example :func:`ok` attached, as written: FastAPI writes the document leaving out every
``null`` (``exclude_none``), so :func:`complete_answers` puts them back."""

TEXT_SCHEMA = {"type": "string"}
LINK = {
    "Link": {
        "description": 'RFC 8288 `<...>; rel="next"`: the next page, the whole query kept; '
        "absent on the last page",
        "schema": {"type": "string"},
    }
}
ACCESS_SEQ = {
    "X-Access-Seq": {
        "description": "The `personal_data.accessed` event recorded before answering",
        "schema": {"type": "integer"},
    }
}


def ok(
    model: Any,
    description: str,
    example: Any = None,
    *,
    status: int = 200,
    headers: dict[str, Any] | None = None,
    also: dict[str, Any] | None = None,
) -> dict[int | str, dict[str, Any]]:
    """A JSON answer ``model`` (documentation only), with its ``example`` and ``headers``;
    ``also``: other media types the same status may answer with."""
    if example is not None:
        _SHOWN.append(example)
    content: dict[str, Any] = {JSON: {} if example is None else {"example": example}}
    content.update(also or {})
    answer: dict[str, Any] = {"model": model, "description": description, "content": content}
    if headers:
        answer["headers"] = headers
    return {status: answer}


def text(description: str, example: str, media: str = TEXT) -> dict[int | str, dict[str, Any]]:
    """A text answer (not JSON): a string."""
    return {
        200: {
            "description": description,
            "content": {media: {"schema": TEXT_SCHEMA, "example": example}},
        }
    }


def problems(*statuses: int, **why: str) -> dict[int | str, dict[str, Any]]:
    """Problem documents for ``statuses``, each described by why THIS route answers it
    (``why["s400"]`` for 400 ...) when given."""
    found: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        try:
            (answer,) = documented(status).values()
        except KeyError:  # a status the common list has no words for: this route's own
            (answer,) = documented(400).values()
            answer = {**answer, "description": why[f"s{status}"]}
        reason = why.get(f"s{status}")
        found[status] = {**answer, "description": reason} if reason else answer
    return found


_FASTAPI_422 = "#/components/schemas/HTTPValidationError"
"""The schema FastAPI gives the ``422`` it adds to every operation with parameters that does not
document one: this API answers a bad parameter ``400`` (api/http/problems.py), never that."""


def complete_answers(document: dict[str, Any]) -> None:
    """What FastAPI's document gets wrong about the answers, put right (idempotent):

    - the ``422`` FastAPI adds by itself to every operation with parameters that does not
      list one is taken out (each route lists its own statuses; a bad parameter is ``400``),
      and its ``HTTPValidationError`` and ``ValidationError`` schemas once nothing refers to
      them;
    - the examples get back the ``null`` values FastAPI left out (``exclude_none``), which
      their schemas require: an answer always holds those keys.
    """
    restored = {_key(_without_nulls(shown)): shown for shown in _SHOWN}
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            answers = operation.get("responses", {})
            schema = answers.get("422", {}).get("content", {}).get(JSON, {}).get("schema", {})
            if schema.get("$ref") == _FASTAPI_422:
                del answers["422"]
            for answer in answers.values():
                for content in answer.get("content", {}).values():
                    if "example" in content:
                        found = restored.get(_key(content["example"]))
                        if found is not None:
                            content["example"] = found
    schemas = document.get("components", {}).get("schemas", {})
    if _FASTAPI_422 not in json.dumps(document.get("paths", {})):
        schemas.pop("HTTPValidationError", None)
        if "#/components/schemas/ValidationError" not in json.dumps(document):
            schemas.pop("ValidationError", None)


def _without_nulls(value: Any) -> Any:
    """``value`` as FastAPI writes it into the document: no ``null`` member of an object."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def with_members(
    answers: dict[int | str, dict[str, Any]], status: int, members: type[BaseModel]
) -> dict[int | str, dict[str, Any]]:
    """``answers`` with the problem of ``status`` saying what more it may hold: the problem
    document's schema and ``members``'s (``allOf``). Some problems of that status may not
    hold them; those that do hold them so."""
    answer = answers[status]
    content = answer["content"]
    media = next(iter(content))
    schema = members.model_json_schema(
        mode="serialization", by_alias=True, ref_template="#/components/schemas/{model}"
    )
    schema.pop("required", None)  # a problem of this status without them is one too
    nested = schema.pop("$defs", {})
    if nested:
        raise ValueError(f"{members.__name__}: members refer to other models")
    combined = {"allOf": [content[media]["schema"], schema]}
    return {**answers, status: {**answer, "content": {**content, media: {"schema": combined}}}}
