"""The event catalogue, version 1: every fact an emitting service can record.

A *fact* is what a service sends: a JSON object with a ``type`` (``consent.given``), the
emitter's ``event_id`` (its idempotency key), ``occurred_at`` (the emitter's clock, with an
offset) and the fields of its type. :func:`parse_fact` validates one and returns the typed
model, or raises :class:`~ledger.errors.ValidationError` naming each field and rule.

Fields that are personal data are marked :data:`SubjectRef` (the emitter's own reference to a
person) or :data:`PersonalText` (contact details, IP addresses, free text about a person). The
ledger never stores them in plaintext: see :mod:`ledger.sealing`. ``docs/events.md`` lists them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal, TypeAlias, Union, get_args, get_origin

import orjson
import pydantic
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StringConstraints,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

from ledger.errors import FieldProblem, ValidationError
from ledger.vocabulary import (
    AgeAttestationMethod,
    CollectionMethod,
    DisclosureKind,
    LegalBasis,
    NotificationChannel,
    RecipientRole,
    RefusalGround,
    RenewalReason,
    RequestKind,
    RiskLevel,
)

CATALOGUE_VERSION = 1
MAX_EVENT_BYTES = 64 * 1024
MAX_SUBJECTS_PER_EVENT = 1000
MAX_DEPTH = 8
"""JSON nesting: objects and arrays within one another, the event itself at depth 1."""

# -- bounds (docs/events.md, "Bounds") -----------------------------------------------------------
# Every time a fact carries is inside [EARLIEST, LATEST) once converted to UTC, so that every
# deadline and period end the ledger derives from it (at most MAX_PERIOD_DAYS later, or a
# request's due days plus its extensions) stays before HORIZON: well inside what every part of
# the stack (Python datetimes, the stored text form, the verifier, the report) computes with.

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
"""The earliest time a fact may carry (included)."""
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
"""Every time a fact carries is before this."""
HORIZON = datetime(2200, 1, 1, tzinfo=UTC)
"""Every deadline and period end derived from a fact's times is before this."""
MAX_OFFSET = timedelta(hours=14)
"""UTC offsets of real time zones run from -12:00 to +14:00; whole minutes only."""
MAX_PERIOD_DAYS = 36_500
"""The longest period counted from a time: a retention period or legal hold (100 years)."""
MAX_EXTENSION_DAYS = 60
"""One ``request.extended``: at most this many days."""
MAX_TOTAL_EXTENSION_DAYS = 365
"""All the extensions of one request together."""
MAX_COUNT = 2**31 - 1
"""Counts of people (``subject_count``, ``approximate_subject_count``)."""

_CONTROLS = re.compile(r"[\x00-\x1f\x7f]")
_CONTROLS_BUT_WHITESPACE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _offset_text(offset: timedelta) -> str:
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(offset) // timedelta(minutes=1)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def check_query_time(value: datetime) -> datetime:
    """A time a question names (HTTP query parameters, the command line's ``--at``, ``--from``,
    ``--to``): without an offset it is UTC; the offset within +-14:00; from
    1970-01-01T00:00:00Z to 2200-01-01T00:00:00Z (the ledger's horizon), both included. The
    moment in UTC."""
    moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    offset = moment.utcoffset()
    if offset is not None and abs(offset) > MAX_OFFSET:
        raise PydanticCustomError(
            "offset_out_of_range", "the UTC offset must be within -14:00 and +14:00"
        )
    try:
        in_utc: datetime | None = moment.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 pushed outside Python's range by the offset
        in_utc = None
    if in_utc is None or not EARLIEST <= in_utc <= HORIZON:
        raise PydanticCustomError(
            "time_out_of_range",
            "times must be from 1970-01-01T00:00:00Z to 2200-01-01T00:00:00Z (in UTC)",
        )
    return in_utc


_DATE_FIRST = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TEXT_TIME: pydantic.TypeAdapter[datetime] = pydantic.TypeAdapter(AwareDatetime)


def refuse_seconds(value: object) -> object:
    """A time given as text starts with its date (``2026-03-05T21:14:03+09:00``). pydantic would
    also read a string of digits (``"1700000000"``) as Unix seconds: a careless emitter's
    epoch, which names no offset and which the catalogue, the query parameters and the OpenAPI
    document (RFC 3339) all refuse. Any other value passes, for the parser to judge."""
    if isinstance(value, str) and not _DATE_FIRST.match(value):
        raise PydanticCustomError(
            "datetime_parsing",
            "a time is RFC 3339 text with its date first and its UTC offset, such as "
            "2026-03-05T21:14:03+09:00, not a number of seconds",
        )
    return value


def check_time_text(value: object) -> object:
    """A fact's time: RFC 3339 text (:func:`refuse_seconds`), parsed here, in JSON mode, by the
    parser that parsed it before that check existed (after a "before" validator the field's own
    strict parser would see a Python string, and refuse it). A number is not a time; a
    datetime (the ledger's own code) passes."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError("datetime_type", "a time is RFC 3339 text")
    refuse_seconds(value)
    try:
        return _TEXT_TIME.validate_json(orjson.dumps(value), strict=True)
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        raise PydanticCustomError(error["type"], "{message}", {"message": error["msg"]}) from None


def check_time(value: datetime) -> datetime:
    """A time within the bounds: offset within +-14:00, and in [EARLIEST, LATEST) in UTC."""
    offset = value.utcoffset()
    if offset is None or abs(offset) > MAX_OFFSET or offset % timedelta(minutes=1):
        shown = "none" if offset is None else _offset_text(offset)
        raise PydanticCustomError(
            "offset_out_of_range",
            "the UTC offset must be whole minutes from -14:00 to +14:00, not {offset}",
            {"offset": shown},
        )
    try:
        in_utc: datetime | None = value.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 pushed outside Python's range by the offset
        in_utc = None
    if in_utc is None or not EARLIEST <= in_utc < LATEST:
        raise PydanticCustomError(
            "time_out_of_range",
            "times must be from 1970-01-01T00:00:00Z up to (not including) "
            "2100-01-01T00:00:00Z, after conversion to UTC",
        )
    return value


def check_one_line(value: str) -> str:
    """No control character at all (C0, U+0000 to U+001F, and DEL)."""
    found = _CONTROLS.search(value)
    if found:
        raise PydanticCustomError(
            "control_character",
            "control character U+{code} at position {position}; this field takes none",
            {"code": f"{ord(found.group()):04X}", "position": found.start()},
        )
    return value


def check_free_text(value: str) -> str:
    """Free text: tab, line feed and carriage return, and no other control character."""
    found = _CONTROLS_BUT_WHITESPACE.search(value)
    if found:
        raise PydanticCustomError(
            "control_character",
            "control character U+{code} at position {position}; free text takes only "
            "tab, line feed and carriage return",
            {"code": f"{ord(found.group()):04X}", "position": found.start()},
        )
    return value


OneLine = AfterValidator(check_one_line)
FreeText = AfterValidator(check_free_text)


# -- what the JSON Schema says (the OpenAPI document; nothing here validates) --------------------


@dataclass(frozen=True)
class Described:
    """Says in a field's JSON Schema what its validators check beyond type and bounds: a
    ``pattern`` when JSON Schema can test it (ECMA 262, as OpenAPI reads it), words for the
    rest. Only the schema changes: what a fact must be is the validators' (above)."""

    pattern: str | None = None
    description: str | None = None

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        if self.pattern is not None:
            if "pattern" in schema:
                raise ValueError(f"two patterns for one field: {schema['pattern']}, {self.pattern}")
            schema["pattern"] = self.pattern
        if self.description is not None:
            known = schema.get("description")
            schema["description"] = f"{known} {self.description}" if known else self.description
        return schema


ONE_LINE_PATTERN = r"^[^\u0000-\u001f\u007f]*$"
"""What :func:`check_one_line` admits: no C0 control character and no DEL."""
FREE_TEXT_PATTERN = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]*$"
"""What :func:`check_free_text` admits: tab, line feed and carriage return of the controls."""
OneLineSchema = Described(pattern=ONE_LINE_PATTERN)
FreeTextSchema = Described(
    pattern=FREE_TEXT_PATTERN,
    description="Free text: tab, line feed and carriage return, and no other control character.",
)
TIME_RULES = (
    "RFC 3339 with its UTC offset (`Z` or `+09:00`); the offset whole minutes within "
    "-14:00 and +14:00; from 1970-01-01T00:00:00Z up to (not including) 2100-01-01T00:00:00Z "
    "once converted to UTC. A number, or a string of digits (seconds since 1970), is not a "
    "time."
)
HAPPENED_RULES = (
    "When it happened: not later than the ledger's clock plus its tolerance for clock skew "
    "(five minutes)."
)


@dataclass(frozen=True)
class Happened:
    """Marks the time something happened: not after the ledger's clock (plus its tolerance)."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema["description"] = f"{schema.get('description', '')} {HAPPENED_RULES}".strip()
        return schema


Moment = Annotated[
    AwareDatetime,
    BeforeValidator(check_time_text),
    AfterValidator(check_time),
    Described(description=TIME_RULES),
]
"""Any time in the catalogue: RFC 3339 with an offset, within the bounds above."""
HappenedAt = Annotated[Moment, Happened()]


@dataclass(frozen=True)
class PersonalData:
    """Marks a field as personal data: stored only encrypted under its subject's key.

    The field's JSON Schema says so too (``x-personal-data``: ``subject`` or ``text``)."""

    kind: Literal["subject", "text"]

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema["x-personal-data"] = self.kind
        return schema


Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$")
]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200), OneLine, OneLineSchema]
Label = Annotated[str, StringConstraints(min_length=1, max_length=64), OneLine, OneLineSchema]
OrgText = Annotated[str, StringConstraints(min_length=1, max_length=4000), FreeText, FreeTextSchema]
Url = Annotated[str, StringConstraints(max_length=2000), OneLine, OneLineSchema]
SubjectRef = Annotated[
    str,
    StringConstraints(min_length=1, max_length=256),
    OneLine,
    OneLineSchema,
    PersonalData("subject"),
]
PersonalText = Annotated[
    str,
    StringConstraints(min_length=1, max_length=2000),
    FreeText,
    FreeTextSchema,
    PersonalData("text"),
]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
Digest = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]
DataCategory = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
]
PurposeId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
]


class _Model(BaseModel):
    # Attribute docstrings describe their fields in the JSON Schema (the OpenAPI document) too.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class Fact(_Model):
    """Fields every fact carries."""

    TYPE: ClassVar[str]
    VERSION: ClassVar[int] = 1
    SUBJECT_SCOPED: ClassVar[bool] = False
    """True when the fact concerns one subject, named by its ``subject`` field."""

    event_id: Identifier
    occurred_at: HappenedAt


# -- policy -----------------------------------------------------------------------------------


class Purpose(_Model):
    id: PurposeId
    name: Name
    legal_basis: LegalBasis
    retention_days: int = Field(ge=0, le=MAX_PERIOD_DAYS)
    separate_consent: bool = False
    """PIPL 14/23/39 and GDPR 7(2): asked for on its own, never bundled."""
    description: OrgText | None = None


class PolicyVersionPublished(Fact):
    TYPE = "policy.version_published"
    type: Literal["policy.version_published"]
    version: Identifier
    effective_at: Moment
    material: bool
    """A material change: consent given under earlier versions must be renewed."""
    purposes: list[Purpose] = Field(min_length=1, max_length=100)
    """The purposes of this version, each ``id`` once."""
    text_digest: Digest
    url: Url | None = None
    minimum_age: int | None = Field(default=None, ge=0, le=21)
    """Overrides the ledger's configured minimum age from this version on."""
    guardian_consent_allowed: bool = False
    """A guardian's consent stands for a minor's under this version (GDPR 8, PIPL 31). Off by
    default, as in the seed policy: "If you are a minor under the age of 18, we will not provide
    you with the Services"."""

    @pydantic.field_validator("purposes")
    @classmethod
    def _purpose_ids_are_unique(cls, purposes: list[Purpose]) -> list[Purpose]:
        ids = [p.id for p in purposes]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise PydanticCustomError(
                "purpose_repeated", "purpose ids must be unique; repeated: {ids}", {"ids": repeated}
            )
        return purposes


# -- recipients -------------------------------------------------------------------------------


class RecipientRegistered(Fact):
    TYPE = "recipient.registered"
    type: Literal["recipient.registered"]
    recipient_id: Identifier
    name: Name
    role: RecipientRole
    country: CountryCode
    agreement_ref: Name | None = None
    parent_recipient_id: Identifier | None = None
    """For a sub-processor: the processor that engaged it."""
    purposes: list[PurposeId] = Field(default_factory=list, max_length=100)
    data_categories: list[DataCategory] = Field(default_factory=list, max_length=100)


class RecipientUpdated(Fact):
    TYPE = "recipient.updated"
    type: Literal["recipient.updated"]
    recipient_id: Identifier
    name: Name | None = None
    country: CountryCode | None = None
    agreement_ref: Name | None = None
    purposes: list[PurposeId] | None = Field(default=None, max_length=100)
    data_categories: list[DataCategory] | None = Field(default=None, max_length=100)


class RecipientTerminated(Fact):
    TYPE = "recipient.terminated"
    type: Literal["recipient.terminated"]
    recipient_id: Identifier
    reason: OrgText | None = None


# -- consent ----------------------------------------------------------------------------------


class Evidence(_Model):
    """What the subject saw and how it was captured (ISO/IEC 27560 ``notice`` fields)."""

    notice_id: Identifier | None = None
    form_id: Identifier | None = None
    notice_digest: Digest | None = None
    ip_address: PersonalText | None = None
    user_agent: PersonalText | None = None


class Guardian(_Model):
    """Who consented on a minor's behalf (GDPR 8, PIPL 31)."""

    name: PersonalText
    relationship: Label
    contact: PersonalText | None = None


class _ConsentFact(Fact):
    SUBJECT_SCOPED = True
    subject: SubjectRef
    purposes: list[PurposeId] = Field(min_length=1, max_length=100)
    policy_version: Identifier
    collection_method: CollectionMethod
    evidence: Evidence | None = None
    contact: PersonalText | None = None
    """The channel the consent covers, such as the e-mail address for marketing mail."""


class ConsentGiven(_ConsentFact):
    TYPE = "consent.given"
    type: Literal["consent.given"]
    expires_at: Moment | None = None
    guardian: Guardian | None = None


class ConsentRefused(_ConsentFact):
    TYPE = "consent.refused"
    type: Literal["consent.refused"]


class ConsentWithdrawn(_ConsentFact):
    TYPE = "consent.withdrawn"
    type: Literal["consent.withdrawn"]


class ConsentRenewalRequested(Fact):
    """The controller asked the subject to renew consent: evidence that renewal was solicited,
    and of what is pending. It decides nothing: consent stays valid until it expires or is
    withdrawn, and the request is pending until the subject's next decision on the purpose."""

    TYPE = "consent.renewal_requested"
    SUBJECT_SCOPED = True
    type: Literal["consent.renewal_requested"]
    subject: SubjectRef
    purposes: list[PurposeId] = Field(
        min_length=1, max_length=100, json_schema_extra={"uniqueItems": True}
    )
    policy_version: Identifier
    """The terms the renewal asks for: a published version that lists every purpose."""
    reason: RenewalReason
    channel: NotificationChannel
    """How the subject was asked (the channels the catalogue reaches subjects by)."""
    respond_by: Moment | None = None
    """The answer asked for by then; after ``occurred_at``."""

    @pydantic.field_validator("purposes")
    @classmethod
    def _purposes_are_distinct(cls, purposes: list[str]) -> list[str]:
        repeated = sorted({p for p in purposes if purposes.count(p) > 1})
        if repeated:
            raise PydanticCustomError(
                "purpose_repeated", "purposes must be distinct; repeated: {ids}", {"ids": repeated}
            )
        return purposes


class AgeAttested(Fact):
    TYPE = "subject.age_attested"
    SUBJECT_SCOPED = True
    type: Literal["subject.age_attested"]
    subject: SubjectRef
    age: int = Field(ge=0, le=150)
    method: AgeAttestationMethod


class SubjectLifecycleStarted(Fact):
    """A reference whose subject was erased now names someone the ledger may record again."""

    TYPE = "subject.lifecycle_started"
    SUBJECT_SCOPED = True
    type: Literal["subject.lifecycle_started"]
    subject: SubjectRef
    reason: OrgText | None = None


# -- disclosures ------------------------------------------------------------------------------


class DisclosureRecorded(Fact):
    TYPE = "disclosure.recorded"
    type: Literal["disclosure.recorded"]
    disclosure_id: Identifier
    recipient_id: Identifier
    kind: DisclosureKind
    subjects: list[SubjectRef] = Field(min_length=1, max_length=MAX_SUBJECTS_PER_EVENT)
    data_categories: list[DataCategory] = Field(min_length=1, max_length=100)
    purpose: PurposeId
    legal_basis: LegalBasis
    de_identified: bool
    destination_country: CountryCode
    policy_version: Identifier
    """The policy version whose purpose the disclosure serves."""


# -- incidents --------------------------------------------------------------------------------


class AffectedRule(_Model):
    """Find the affected subjects in the log: disclosed to this recipient in this window."""

    recipient_id: Identifier
    disclosed_from: Moment
    disclosed_to: Moment


class IncidentOpened(Fact):
    TYPE = "incident.opened"
    type: Literal["incident.opened"]
    incident_id: Identifier
    detected_at: HappenedAt
    summary: OrgText
    recipient_id: Identifier | None = None
    data_categories: list[DataCategory] = Field(default_factory=list, max_length=100)


class IncidentAssessed(Fact):
    TYPE = "incident.assessed"
    type: Literal["incident.assessed"]
    incident_id: Identifier
    risk: RiskLevel
    data_categories: list[DataCategory] = Field(min_length=1, max_length=100)
    likely_consequences: OrgText
    affected_subjects: list[SubjectRef] = Field(
        default_factory=list, max_length=MAX_SUBJECTS_PER_EVENT
    )
    affected_rule: AffectedRule | None = None
    approximate_subject_count: Count | None = None


class IncidentContained(Fact):
    TYPE = "incident.contained"
    type: Literal["incident.contained"]
    incident_id: Identifier
    measures: OrgText


class IncidentAuthorityNotified(Fact):
    TYPE = "incident.authority_notified"
    type: Literal["incident.authority_notified"]
    incident_id: Identifier
    authority: Name
    reference: Name | None = None
    dpo_contact: OrgText
    """GDPR 33(3)(b): where more information can be obtained."""
    delay_reason: OrgText | None = None
    """GDPR 33(1): the reasons, when the notification comes after 72 hours."""


class IncidentSubjectsNotified(Fact):
    TYPE = "incident.subjects_notified"
    type: Literal["incident.subjects_notified"]
    incident_id: Identifier
    channel: NotificationChannel
    subject_count: Count
    message_digest: Digest | None = None


class IncidentClosed(Fact):
    TYPE = "incident.closed"
    type: Literal["incident.closed"]
    incident_id: Identifier
    resolution: OrgText


# -- data-subject requests --------------------------------------------------------------------


class RequestReceived(Fact):
    TYPE = "request.received"
    SUBJECT_SCOPED = True
    type: Literal["request.received"]
    request_id: Identifier
    subject: SubjectRef
    kind: RequestKind
    channel: Label
    jurisdiction: CountryCode | None = None
    """Whose deadline applies (ISO 3166 code, or EU); the register's due date depends on it."""
    details: PersonalText | None = None
    purposes: list[PurposeId] = Field(default_factory=list, max_length=100)


class _RequestStep(Fact):
    SUBJECT_SCOPED = True
    request_id: Identifier
    subject: SubjectRef


class RequestIdentityVerified(_RequestStep):
    TYPE = "request.identity_verified"
    type: Literal["request.identity_verified"]
    method: Label


class RequestExtended(_RequestStep):
    TYPE = "request.extended"
    type: Literal["request.extended"]
    extension_days: int = Field(ge=1, le=MAX_EXTENSION_DAYS)
    reason: PersonalText


class RequestFulfilled(_RequestStep):
    TYPE = "request.fulfilled"
    type: Literal["request.fulfilled"]
    note: PersonalText | None = None
    bundle_manifest_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    """An access request answered with the subject's bundle: the SHA-256 (lower-case hex) of
    its ``manifest.json``, which names the digest of every file in it, so the answer given can
    be proven later (only for a request of kind ``access``)."""


class RequestRefused(_RequestStep):
    TYPE = "request.refused"
    type: Literal["request.refused"]
    ground: RefusalGround
    explanation: PersonalText


# -- corrections ------------------------------------------------------------------------------


class CorrectionRecorded(Fact):
    TYPE = "correction.recorded"
    type: Literal["correction.recorded"]
    corrects_event_id: Identifier
    reason: OrgText
    corrected_fields: dict[str, Any] = Field(default_factory=dict, max_length=50)
    """The corrected values, by field name; personal data is never put here. Each value is
    checked as the corrected event's type checks that field; the fields that place an event
    (its type, ids and version) cannot be corrected."""


AnyFact: TypeAlias = Union[  # noqa: UP007 (a discriminated union is spelled this way)
    PolicyVersionPublished,
    RecipientRegistered,
    RecipientUpdated,
    RecipientTerminated,
    ConsentGiven,
    ConsentRefused,
    ConsentWithdrawn,
    ConsentRenewalRequested,
    AgeAttested,
    SubjectLifecycleStarted,
    DisclosureRecorded,
    IncidentOpened,
    IncidentAssessed,
    IncidentContained,
    IncidentAuthorityNotified,
    IncidentSubjectsNotified,
    IncidentClosed,
    RequestReceived,
    RequestIdentityVerified,
    RequestExtended,
    RequestFulfilled,
    RequestRefused,
    CorrectionRecorded,
]

FACT_TYPES: dict[str, type[Fact]] = {cls.TYPE: cls for cls in get_args(AnyFact)}
_ADAPTER: pydantic.TypeAdapter[AnyFact] = pydantic.TypeAdapter(
    Annotated[AnyFact, Field(discriminator="type")]
)


def fact_json_schema(ref_template: str = "#/$defs/{model}") -> dict[str, Any]:
    """The JSON Schema (2020-12) of one fact, from the adapter :func:`parse_fact` validates with:
    a ``oneOf`` of the types, discriminated by ``type`` (with its ``mapping``), each type and
    each part a definition named by its model (``ConsentGiven``, ``Evidence``, ``LegalBasis``)
    and referred to by ``ref_template``; ``$defs`` holds them."""
    return _ADAPTER.json_schema(ref_template=ref_template)


def parse_fact(raw: Mapping[str, Any]) -> Fact:
    """Validate one fact; raise :class:`ValidationError` naming every broken field and rule."""
    if not isinstance(raw, Mapping):
        raise ValidationError.single("", "object_required", "an event must be a JSON object")
    if _depth(raw) > MAX_DEPTH:
        raise ValidationError.single(
            "", "max_depth", f"objects and arrays nest at most {MAX_DEPTH} deep in an event"
        )
    try:
        size = len(orjson.dumps(raw))
    except TypeError as exc:
        raise ValidationError.single("", "json_required", f"not JSON data: {exc}") from None
    if size > MAX_EVENT_BYTES:
        raise ValidationError.single(
            "",
            "max_event_bytes",
            f"the event is {size} bytes encoded; the limit is {MAX_EVENT_BYTES}",
        )
    type_name = raw.get("type")
    if not isinstance(type_name, str) or type_name not in FACT_TYPES:  # {} is not even hashable
        known = ", ".join(sorted(FACT_TYPES))
        rule = "required" if type_name is None else "type_unknown"
        raise ValidationError.single("type", rule, f"type must be one of: {known}")
    try:
        # JSON mode, strict: "15" is not an age, "yes" is not true, 1700000000 is not a date.
        return _ADAPTER.validate_json(orjson.dumps(raw), strict=True)
    except pydantic.ValidationError as exc:
        raise ValidationError(list(_problems(exc, str(type_name)))) from None


def _depth(value: Any) -> int:
    """How deep objects and arrays nest in ``value`` (counted up to one past MAX_DEPTH)."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, Mapping):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            break
        pending.extend((child, level + 1) for child in children)
    return deepest


_MOMENT: pydantic.TypeAdapter[datetime] = pydantic.TypeAdapter(Moment)


@functools.cache
def _happened_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """The fields of ``model`` that say when something happened (once per type: an append
    asks for every fact)."""
    return tuple(
        name
        for name, info in model.model_fields.items()
        if any(isinstance(m, Happened) for m in info.metadata)
    )


HAPPENED_FIELDS = frozenset(name for t in FACT_TYPES.values() for name in _happened_fields(t))
"""The names of the times at which something happened (``occurred_at``, ``detected_at``)."""


def happened_times(fact: Fact) -> list[tuple[str, datetime]]:
    """Every time in ``fact`` at which something happened, as ``(field, time)``.

    The ledger refuses any of them later than its clock plus its tolerance. A correction's
    are those it sets: a correction may not move a detection into the future either.
    """
    found = [(name, getattr(fact, name)) for name in _happened_fields(type(fact))]
    if isinstance(fact, CorrectionRecorded):
        for name, value in fact.corrected_fields.items():
            if name in HAPPENED_FIELDS and isinstance(value, str):
                try:
                    moment = _MOMENT.validate_json(orjson.dumps(value), strict=True)
                except pydantic.ValidationError:
                    continue  # reported by correction_problems, with the field's own rule
                found.append((f"corrected_fields.{name}", moment))
    return found


def _problems(exc: pydantic.ValidationError, tag: str) -> Iterator[FieldProblem]:
    for error in exc.errors(include_url=False):
        loc = list(error["loc"])
        if loc and loc[0] == tag:
            loc = loc[1:]
        field = ""
        for part in loc:
            field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
        rule = {"missing": "required", "extra_forbidden": "unknown_field"}.get(
            error["type"], error["type"]
        )
        yield FieldProblem(field=field, rule=rule, message=error["msg"])


def personal_data_paths(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str]]:
    """Every personal-data field of ``model`` as ``(dotted path, kind)``; ``[]`` marks a list."""
    paths: list[tuple[str, str]] = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        marker = next((m for m in info.metadata if isinstance(m, PersonalData)), None)
        if marker is not None:
            paths.append((path, marker.kind))
            continue
        paths.extend(_annotation_paths(info.annotation, path))
    return paths


def _annotation_paths(annotation: Any, path: str) -> list[tuple[str, str]]:
    origin = get_origin(annotation)
    if origin is Annotated:
        found = [m for m in annotation.__metadata__ if isinstance(m, PersonalData)]
        return [(path, found[0].kind)] if found else []
    if origin is list:
        return _annotation_paths(get_args(annotation)[0], f"{path}[]")
    if origin is dict:
        return []
    if get_args(annotation):  # X | None
        return [p for arg in get_args(annotation) for p in _annotation_paths(arg, path)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return personal_data_paths(annotation, f"{path}.")
    return []


IDENTITY_FIELDS = frozenset(
    {"type", "event_id", "version", "recipient_id", "disclosure_id", "incident_id", "request_id"}
)
"""Fields that say which stream an event belongs to: a correction cannot move an event."""


def correction_problems(type_name: str, fields: Mapping[str, Any]) -> list[FieldProblem]:
    """What is wrong with correcting these fields of an event of ``type_name``.

    Each value is validated as the catalogue validates that field (strict JSON mode).
    """
    fact_type = FACT_TYPES[type_name]
    personal = {p.split(".")[0].removesuffix("[]") for p, _ in personal_data_paths(fact_type)}
    problems: list[FieldProblem] = []
    for name, value in fields.items():
        where = f"corrected_fields.{name}"
        if name in personal:
            problems.append(
                FieldProblem(
                    where,
                    "personal_data_not_allowed",
                    "personal data cannot be corrected by a correction event; record a new fact",
                )
            )
        elif name in IDENTITY_FIELDS:
            problems.append(
                FieldProblem(
                    where, "field_not_correctable", f"{name} places the event; it cannot change"
                )
            )
        elif name not in fact_type.model_fields:
            problems.append(
                FieldProblem(where, "field_unknown", f"{type_name} has no field {name!r}")
            )
        else:
            problems.extend(_field_problems(fact_type, name, value, where))
    return problems


def _field_problems(fact_type: type[Fact], name: str, value: Any, where: str) -> list[FieldProblem]:
    info = fact_type.model_fields[name]
    annotation: Any = info.annotation
    adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(
        Annotated[(annotation, *info.metadata)] if info.metadata else annotation
    )
    try:
        adapter.validate_json(orjson.dumps(value), strict=True)
    except pydantic.ValidationError as exc:
        return [
            FieldProblem(
                where + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"]),
                e["type"],
                e["msg"],
            )
            for e in exc.errors(include_url=False)
        ]
    except orjson.JSONEncodeError as exc:
        return [FieldProblem(where, "json_required", str(exc))]
    return []
