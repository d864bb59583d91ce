"""The demo data set: a year of a consumer app's privacy facts, generated, not recorded.

:func:`generate` is pure and deterministic: the same users, seed and anchor give the same facts,
value for value, in the same order, with the same event ids (``demo-000001`` ...). It does no
I/O; ``consent-ledger demo`` (``api/cli/demo.py``) appends what it returns. The story follows
the seed privacy policy (docs/demo.md tells it in full):

- three policy versions: ``v1.0`` with the seed policy's eight purposes, ``v1.1`` (not
  material), and ``v2.0``, a material change (personalised recommendations, requests from
  authorities, and a parent's consent accepted for members under 18: ``v1.x``, like the seed
  policy, accepts none) after which consent given before it must be renewed; some members renew,
  some never do;
- processors (cloud hosting and its backup sub-processor, a support desk, an analytics firm, an
  e-mail and an SMS service; the SMS service is terminated part-way), third parties (an
  advertising partner, a payment provider) and two authorities;
- members who sign up over the year, attest their age (a few minors, with a parent's consent),
  give, refuse and withdraw consent per purpose;
- monthly disclosures to each recipient, of the members they concern, entrusted to processors
  de-identified as the policy promises; the consent-based ones name only members whose consent
  is valid, except for the violations planted on purpose (:attr:`DemoDataSet.planted`): a stale
  advertising audience, a newsletter sent to members who never renewed after the material
  change, withdrawals by post recorded weeks late, an analytics export that counted a parent's
  consent ``v1.x`` does not accept, an SMS campaign through the terminated processor, an upload
  to a recipient never registered, a win-back mailing under "legitimate interest" to members
  who had not agreed to the newsletter, a raw (not de-identified) ticket export to the support
  desk;
- one incident at the support desk (assessed, contained, the authority and the members
  notified, its detection time corrected), and data-subject requests: answered, refused with
  a ground (one of them the seed policy's "unnecessarily repetitive"), open, and one overdue.

Time: every fact is dated relative to the **anchor**, midnight UTC of a day (the day the demo is
first loaded). The year runs from 365 days before the anchor to an hour before it, so every
fact lies in the past when the demo is loaded that day or later, and what should be recent
(the incident, the requests, the overdue one) is recent. :func:`anchor_of` reads the anchor back
from the first fact, so that a rerun on a later day regenerates the same facts.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

DEFAULT_USERS = 2000
DEFAULT_SEED = 1
MAX_USERS = 50_000
VIOLATIONS = (
    "consent_missing",
    "legal_basis_not_permitted",
    "not_de_identified",
    "recipient_terminated",
    "recipient_unregistered",
)
"""The verdicts of the disclosure history that are violations."""
CONSENT_EXCEPTIONS = frozenset(
    {
        "legal_obligation",
        "national_security",
        "public_health",
        "criminal_investigation",
        "vital_interest",
        "made_public_by_subject",
        "contract",
        "publicly_disclosed_information",
        "service_safety",
    }
)
"""The seed policy's exceptions to consent (the generator's own copy: it predicts the read
models' verdicts without their code)."""

FIRST_EVENT_ID = "demo-000001"
_FIRST_FACT_BEFORE_ANCHOR = timedelta(days=370) - timedelta(hours=9)
"""The first fact (the hosting processor's registration) occurs this long before the anchor."""


# -- the policy --------------------------------------------------------------------------------


def _purpose(
    pid: str, name: str, basis: str, days: int, description: str, *, separate: bool = False
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "id": pid,
        "name": name,
        "legal_basis": basis,
        "retention_days": days,
        "description": description,
    }
    if separate:
        result["separate_consent"] = True
    return result


PURPOSES_V1 = [
    _purpose(
        "service_provision",
        "Providing the service",
        "contract",
        1825,
        "Account registration, sign-in, the features a member signs up for, payments and the "
        "records consumer-protection law requires.",
    ),
    _purpose(
        "customer_support",
        "Customer support",
        "contract",
        1095,
        "Answering enquiries and complaints, and keeping the record of how they were handled.",
    ),
    _purpose(
        "community",
        "Community features",
        "consent",
        730,
        "Public profile, posts, comments and messages between members.",
    ),
    _purpose(
        "usage_analytics",
        "Usage analytics",
        "consent",
        395,
        "Statistics on how the app is used, to fix problems and improve features.",
    ),
    _purpose(
        "personalised_ads_cookies",
        "Personalised ads via cookies and device IDs",
        "consent",
        395,
        "Cookies and advertising identifiers used by us and our advertising partner to show "
        "ads based on browsing and app activity.",
        separate=True,
    ),
    _purpose(
        "marketing_sms",
        "Marketing by SMS",
        "consent",
        730,
        "Offers, events and new features sent by text message.",
    ),
    _purpose(
        "marketing_email",
        "Marketing by e-mail",
        "consent",
        730,
        "Newsletters, offers and event invitations sent by e-mail.",
    ),
    _purpose(
        "surveys",
        "Surveys and research",
        "consent",
        180,
        "Questionnaires and interviews about the service.",
    ),
]
PURPOSES_V2 = [
    *PURPOSES_V1,
    _purpose(
        "personalised_recommendations",
        "Personalised recommendations",
        "consent",
        395,
        "Recommending content and members from a profile of the member's activity.",
        separate=True,
    ),
    _purpose(
        "legal_requests",
        "Requests from authorities and emergencies",
        "legal_obligation",
        1825,
        "Answering lawful requests of the police and courts, and protecting life in an emergency.",
    ),
]
BUNDLE = ("community", "usage_analytics", "surveys")
"""Purposes asked for together on the sign-up screen."""
BUNDLE_ODDS = {"community": 0.7, "usage_analytics": 0.6, "surveys": 0.3}
ADS = "personalised_ads_cookies"
RECOMMENDATIONS = "personalised_recommendations"
EMAIL = "marketing_email"
SMS = "marketing_sms"


@dataclass(frozen=True)
class _Policy:
    version: str
    published: datetime
    effective: datetime
    material: bool
    purposes: list[dict[str, Any]]
    guardian_consent_allowed: bool = False

    def basis(self, purpose: str) -> str:
        return next(str(p["legal_basis"]) for p in self.purposes if p["id"] == purpose)


@dataclass(frozen=True)
class _Recipient:
    recipient_id: str
    name: str
    role: str
    country: str
    registered: datetime | None
    """None: never registered (a disclosure to it is a violation)."""
    terminated: datetime | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)


# -- what the generator promises ---------------------------------------------------------------


@dataclass(frozen=True)
class Planted:
    """A disclosure row made wrong on purpose: which, to whom, the verdict it must get, why."""

    disclosure_id: str
    subject: str
    verdict: str
    why: str


@dataclass(frozen=True)
class DemoDataSet:
    facts: list[dict[str, Any]]
    """In append order, each with its ``event_id``."""
    anchor: date
    users: int
    seed: int
    verdicts: dict[str, int]
    """Disclosure-history rows (one per subject per disclosure) expected per verdict."""
    planted: list[Planted]
    incident_id: str
    incident_detected_at: datetime
    """As corrected by the demo's ``correction.recorded``."""
    overdue_request_id: str
    open_request_ids: list[str]
    """Requests still open at the anchor, the overdue one among them."""
    renewal_required: list[str]
    """Members with a consent awaiting renewal after the material change, at the anchor."""
    renewed: list[str]
    """Members who renewed their consent under the material version."""
    minors: list[str]
    late_event_ids: list[str]
    """Facts appended last although they occurred weeks before (withdrawals sent by post)."""

    @property
    def violations(self) -> dict[str, int]:
        return {verdict: self.verdicts.get(verdict, 0) for verdict in VIOLATIONS}


def anchor_of(first_fact: Mapping[str, Any]) -> date:
    """The anchor of the demo whose first fact (``demo-000001``) this is."""
    occurred = datetime.fromisoformat(str(first_fact["occurred_at"]))
    return (occurred + _FIRST_FACT_BEFORE_ANCHOR).date()


def default_anchor(now: datetime | None = None) -> date:
    """Today, in UTC."""
    return (now or datetime.now(UTC)).astimezone(UTC).date()


# -- generating --------------------------------------------------------------------------------


def generate(
    users: int = DEFAULT_USERS, seed: int = DEFAULT_SEED, anchor: date | None = None
) -> DemoDataSet:
    """The demo's facts and what they promise; ``anchor`` defaults to today (UTC)."""
    if not 20 <= users <= MAX_USERS:
        raise ValueError(f"users must be 20..{MAX_USERS}, not {users}")
    return _Generator(users, seed, anchor or default_anchor()).run()


@dataclass
class _Decision:
    at: datetime
    kind: str
    """given, refused or withdrawn"""
    version: str
    expires: datetime | None = None
    late: bool = False


@dataclass
class _Member:
    index: int
    ref: str
    signup: datetime
    age: int
    email: str
    phone: str
    ip: str
    agent: str
    decisions: dict[str, list[_Decision]] = field(default_factory=dict)

    @property
    def minor(self) -> bool:
        return self.age < 18


@dataclass(order=True)
class _Timed:
    at: datetime
    order: int
    fact: dict[str, Any] = field(compare=False)


# fmt: off
FIRST_NAMES = (
    "jiwoo", "minjun", "seoyeon", "haneul", "dohyun", "yuna", "sora", "taeyang", "emma", "lucas",
    "mia", "noah", "lena", "finn", "chloe", "hugo", "aiko", "kenji", "mei", "arjun", "priya",
    "omar", "lina", "mateo", "sofia",
)
LAST_NAMES = (
    "park", "kim", "lee", "choi", "jung", "kang", "yoon", "han", "schmidt", "mueller", "dubois",
    "rossi", "tanaka", "sato", "chen", "wang", "garcia", "silva", "novak", "larsen",
)
# fmt: on
AGENTS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Mobile/15E148 ExampleApp/8.4.1",
    "Mozilla/5.0 (Linux; Android 15; SM-S931N) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/133.0.0.0 Mobile Safari/537.36 ExampleApp/8.4.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/133.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.3 Safari/605.1.15",
)


def _digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Generator:
    def __init__(self, users: int, seed: int, anchor: date) -> None:
        self.users = users
        self.seed = seed
        self.anchor = anchor
        self.rng = random.Random(f"consent-ledger-demo/{seed}")  # noqa: S311 (made-up data)
        self.zero = datetime.combine(anchor, time(), tzinfo=UTC)
        self.start = self.day(365)
        self.end = self.zero - timedelta(hours=1)
        """No fact occurs after this: an hour before the anchor."""
        self.timed: list[_Timed] = []
        self.late: list[dict[str, Any]] = []
        self.verdicts: Counter[str] = Counter()
        self.planted: list[Planted] = []
        self.policies = [
            _Policy("v1.0", self.day(368, 10), self.start, False, PURPOSES_V1),
            _Policy(
                "v1.1",
                self.day(240, 10),
                self.day(230),
                False,
                [{**p, "retention_days": 365} if p["id"] == "surveys" else p for p in PURPOSES_V1],
            ),
            _Policy("v2.0", self.day(135, 10), self.day(120), True, PURPOSES_V2, True),
        ]
        self.by_version = {p.version: p for p in self.policies}
        self.rules_rng = random.Random(f"consent-ledger-demo/{seed}/policy-rules")  # noqa: S311
        """Picks the members of the seed policy's rules' violations, so that adding them left
        the rest of the story (drawn from ``rng``) as it was."""
        self.material = self.policies[2]
        self.effective = {p.version: p.effective for p in self.policies}
        self.recipients = self._recipients()
        self.members: list[_Member] = []

    def day(self, days_before: int, hours: int = 0, minutes: int = 0) -> datetime:
        """A moment ``days_before`` days before the anchor, at the given UTC time of day."""
        return self.zero - timedelta(days=days_before) + timedelta(hours=hours, minutes=minutes)

    def add(self, at: datetime, fact_type: str, **fields: Any) -> dict[str, Any]:
        assert at <= self.end, (fact_type, at)
        fact = {"type": fact_type, "event_id": "", "occurred_at": _iso(at), **fields}
        self.timed.append(_Timed(at, len(self.timed), fact))
        return fact

    def version_at(self, moment: datetime) -> str:
        return [p.version for p in self.policies if p.effective <= moment][-1]

    # -- the story ---------------------------------------------------------------------------

    def run(self) -> DemoDataSet:
        self._publish_and_register()
        for index in range(self.users):
            self._member(index)
        withdrawing = self._withdrawal_request()
        self._late_withdrawals()
        self._disclosures()
        incident_id, detected = self._incident()
        requests = self._requests(withdrawing)
        facts = [t.fact for t in sorted(self.timed)] + self.late
        for number, fact in enumerate(facts, start=1):
            fact["event_id"] = f"demo-{number:06d}"
        for fact in facts:
            target = fact.get("corrects_event_id")
            if isinstance(target, dict):
                fact["corrects_event_id"] = target["event_id"]
        at = self.end
        renewal_required = [
            m.ref
            for m in self.members
            if any(self.status(m, p, at, known=False) == "renewal_required" for p in m.decisions)
        ]
        renewed = [
            m.ref
            for m in self.members
            if m.signup < self.material.effective
            and any(
                d.kind == "given" and d.version == self.material.version
                for ds in m.decisions.values()
                for d in ds
            )
        ]
        return DemoDataSet(
            facts=facts,
            anchor=self.anchor,
            users=self.users,
            seed=self.seed,
            verdicts=dict(sorted(self.verdicts.items())),
            planted=self.planted,
            incident_id=incident_id,
            incident_detected_at=detected,
            overdue_request_id=requests[0],
            open_request_ids=requests,
            renewal_required=renewal_required,
            renewed=renewed,
            minors=[m.ref for m in self.members if m.minor],
            late_event_ids=[f["event_id"] for f in self.late],
        )

    def _publish_and_register(self) -> None:
        for r in self.recipients.values():
            if r.registered is None:
                continue
            self.add(
                r.registered,  # the first one is the demo's first fact: see anchor_of
                "recipient.registered",
                recipient_id=r.recipient_id,
                name=r.name,
                role=r.role,
                country=r.country,
                **r.fields,
            )
            if r.terminated is not None:
                self.add(
                    r.terminated,
                    "recipient.terminated",
                    recipient_id=r.recipient_id,
                    reason="SMS delivery moved in-house; the processor confirmed in writing "
                    "that it deleted every phone number it held.",
                )
        for policy in self.policies:
            self.add(
                policy.published,
                "policy.version_published",
                version=policy.version,
                effective_at=_iso(policy.effective),
                material=policy.material,
                purposes=policy.purposes,
                text_digest=_digest(f"privacy policy {policy.version}"),
                url=f"https://www.example.com/legal/privacy/{policy.version}",
                minimum_age=18,
                guardian_consent_allowed=policy.guardian_consent_allowed,
            )
        self.add(
            self.day(125, 11),
            "recipient.updated",
            recipient_id="rcp-metricly",
            agreement_ref="DPA-MT-2024-02 rev. 2 with SCCs (EU 2021/914, module 2)",
            data_categories=["usage.events", "device.identifiers", "usage.recommendations"],
        )

    def _recipients(self) -> dict[str, _Recipient]:
        def at(minutes: int) -> datetime:
            return self.day(370, 9, minutes)

        items = [
            _Recipient(
                "rcp-nimbus-cloud",
                "Nimbus Cloud Ireland Ltd",
                "processor",
                "IE",
                at(0),
                fields={
                    "agreement_ref": "DPA-NC-2024-07",
                    "purposes": ["service_provision", "customer_support"],
                    "data_categories": [
                        "account.identifiers",
                        "contact.email",
                        "contact.phone",
                        "usage.logs",
                    ],
                },
            ),
            _Recipient(
                "rcp-nimbus-backup",
                "Nimbus Backup GmbH",
                "sub_processor",
                "DE",
                at(5),
                fields={
                    "agreement_ref": "SUB-DPA-NC-2024-07-01",
                    "parent_recipient_id": "rcp-nimbus-cloud",
                    "purposes": ["service_provision"],
                    "data_categories": ["account.identifiers"],
                },
            ),
            _Recipient(
                "rcp-helpline-desk",
                "Helpline Desk B.V.",
                "processor",
                "NL",
                at(10),
                fields={
                    "agreement_ref": "DPA-HD-2024-11",
                    "purposes": ["customer_support"],
                    "data_categories": ["account.identifiers", "contact.email", "support.tickets"],
                },
            ),
            _Recipient(
                "rcp-metricly",
                "Metricly Analytics Inc.",
                "processor",
                "US",
                at(15),
                fields={
                    "agreement_ref": "DPA-MT-2024-02 with SCCs (EU 2021/914, module 2)",
                    "purposes": ["usage_analytics"],
                    "data_categories": ["usage.events", "device.identifiers"],
                },
            ),
            _Recipient(
                "rcp-mailforge",
                "Mailforge Ltd",
                "processor",
                "IE",
                at(20),
                fields={
                    "agreement_ref": "DPA-MF-2023-19",
                    "purposes": [EMAIL],
                    "data_categories": ["contact.email", "account.name"],
                },
            ),
            _Recipient(
                "rcp-textwave-sms",
                "Textwave SMS Co., Ltd.",
                "processor",
                "KR",
                at(25),
                terminated=self.day(150, 18),
                fields={
                    "agreement_ref": "DPA-TW-2023-04",
                    "purposes": [SMS],
                    "data_categories": ["contact.phone"],
                },
            ),
            _Recipient(
                "rcp-adbridge",
                "AdBridge Media Inc.",
                "third_party",
                "US",
                at(30),
                fields={
                    "agreement_ref": "Data sharing agreement AB-2024-11 with SCCs (module 1)",
                    "purposes": [ADS],
                    "data_categories": ["online.cookie_id", "usage.pages_viewed"],
                },
            ),
            _Recipient(
                "rcp-paystream",
                "PayStream Payments Ltd",
                "third_party",
                "KR",
                at(35),
                fields={
                    "agreement_ref": "Merchant agreement PS-88213",
                    "purposes": ["service_provision"],
                    "data_categories": ["account.identifiers", "payment.transactions"],
                },
            ),
            _Recipient(
                "rcp-emergency-119",
                "National Fire Agency emergency medical service",
                "authority",
                "KR",
                self.day(61, 2, 30),
            ),
            _Recipient(
                "rcp-police-cyber",
                "Metropolitan Police, Cyber Crime Investigation Unit",
                "authority",
                "KR",
                self.day(25, 9),
            ),
            _Recipient("rcp-leadlift", "LeadLift Marketing Ltd", "third_party", "GB", None),
        ]
        return {r.recipient_id: r for r in items}

    # -- members -----------------------------------------------------------------------------

    def _member(self, index: int) -> None:
        rng = self.rng
        span = int((self.end - self.start).total_seconds()) - 3 * 3600
        signup = self.start + timedelta(hours=1, seconds=rng.randrange(span))
        minor = index % 67 == 3
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        member = _Member(
            index=index,
            ref=f"member-{index + 1:05d}",
            signup=signup,
            age=rng.randint(14, 17) if minor else min(18 + int(rng.expovariate(1 / 14)), 90),
            email=f"{first}.{last}{index + 1}@example.net",
            phone=f"+82 10-5550-{index + 1:04d}",
            ip=rng.choice(("192.0.2.", "198.51.100.", "203.0.113.")) + str(rng.randint(1, 254)),
            agent=rng.choice(AGENTS),
        )
        self.members.append(member)
        app = rng.random() < 0.6
        method = "mobile_app" if app else "web_form"
        form = "signup-android-v12" if app else "signup-web-v7"
        version = self.version_at(signup)
        ref = member.ref
        self.add(
            signup,
            "subject.age_attested",
            subject=ref,
            age=member.age,
            method="guardian_declared" if member.minor else "self_declared",
        )
        guardian: dict[str, Any] = {}
        if member.minor:
            guardian = {
                "guardian": {
                    "name": f"{rng.choice(FIRST_NAMES).title()} {last.title()}",
                    "relationship": rng.choice(("mother", "father", "legal guardian")),
                    "contact": f"guardian.{last}{index + 1}@example.org",
                }
            }
        # The cookie banner, on the first visit, minutes before signing up.
        banner = signup - timedelta(seconds=rng.randint(60, 600))
        self.decide(
            member,
            banner,
            "given" if not member.minor and rng.random() < 0.45 else "refused",
            [ADS],
            self.version_at(banner),
            "cookie_banner",
            notice="cookie-banner",
            expires=True,
        )
        at = signup + timedelta(seconds=20)
        accepted = [p for p in BUNDLE if rng.random() < BUNDLE_ODDS[p]]
        if member.minor and "community" not in accepted:
            accepted.insert(0, "community")
        refused = [p for p in BUNDLE if p not in accepted]
        if accepted:
            self.decide(member, at, "given", accepted, version, method, form=form, **guardian)
        if refused:
            self.decide(member, at + timedelta(seconds=1), "refused", refused, version, method)
        at += timedelta(seconds=15)
        marketing_refused = []
        if not member.minor and rng.random() < 0.45:
            self.decide(member, at, "given", [EMAIL], version, method, contact=member.email)
        else:
            marketing_refused.append(EMAIL)
        if not member.minor and rng.random() < 0.2:
            self.decide(member, at, "given", [SMS], version, method, contact=member.phone)
        else:
            marketing_refused.append(SMS)
        self.decide(
            member, at + timedelta(seconds=1), "refused", marketing_refused, version, method
        )
        if version == self.material.version:
            self._recommendations(member, at + timedelta(seconds=10), method, guardian)
        # Later: a renewal after the material change (or not), perhaps a withdrawal.
        later: list[tuple[datetime, str]] = []
        if signup < self.material.effective and rng.random() < 0.65:
            renewal = self.material.effective + timedelta(seconds=rng.randrange(3600, 60 * 86400))
            later.append((renewal, "renew"))
        if rng.random() < 0.12:
            first_day = signup + timedelta(days=1)
            if first_day < self.end - timedelta(days=2):
                seconds = int((self.end - timedelta(days=1) - first_day).total_seconds())
                later.append((first_day + timedelta(seconds=rng.randrange(seconds)), "withdraw"))
        for moment, what in sorted(later):
            if what == "renew":
                self._renew(member, moment, guardian)
            else:
                self._withdraw(member, moment)

    def _recommendations(
        self, member: _Member, at: datetime, method: str, guardian: Mapping[str, Any]
    ) -> None:
        given = self.rng.random() < 0.5
        self.decide(
            member,
            at,
            "given" if given else "refused",
            [RECOMMENDATIONS],
            self.material.version,
            method,
            notice="recommendations-notice",
            **(guardian if given else {}),
        )

    def _renew(self, member: _Member, at: datetime, guardian: Mapping[str, Any]) -> None:
        """The in-app prompt after the material change: renew what was given, decide anew."""
        version = self.material.version
        current = {p for p in member.decisions if self.status(member, p, at) == "renewal_required"}
        bundle = [p for p in BUNDLE if p in current]
        if bundle:
            self.decide(
                member, at, "given", bundle, version, "mobile_app", notice="renewal", **guardian
            )
        for purpose, contact in ((EMAIL, member.email), (SMS, member.phone)):
            if purpose in current:
                self.decide(member, at, "given", [purpose], version, "mobile_app", contact=contact)
        if ADS in current:
            self.decide(member, at, "given", [ADS], version, "cookie_banner", expires=True)
        self._recommendations(member, at + timedelta(seconds=30), "mobile_app", guardian)

    def _withdraw(self, member: _Member, at: datetime) -> None:
        current = sorted(
            p
            for p in member.decisions
            if self.status(member, p, at) in ("given", "renewal_required", "guardian_not_allowed")
        )
        if not current:
            return
        purpose = self.rng.choice(current)
        method = {EMAIL: "email", SMS: "sms", ADS: "cookie_banner"}.get(purpose, "mobile_app")
        notice = {EMAIL: "newsletter-unsubscribe-footer", SMS: "sms-stop-keyword"}.get(
            purpose, "privacy-settings"
        )
        self.decide(member, at, "withdrawn", [purpose], self.version_at(at), method, notice=notice)

    def decide(
        self,
        member: _Member,
        at: datetime,
        kind: str,
        purposes: list[str],
        version: str,
        method: str,
        *,
        notice: str = "consent-notice",
        form: str | None = None,
        expires: bool = False,
        late: bool = False,
        contact: str | None = None,
        guardian: Mapping[str, Any] | None = None,
    ) -> None:
        if not purposes:
            return
        evidence: dict[str, Any] = {
            "notice_id": f"{notice}-{version}",
            "notice_digest": _digest(f"{notice} {version}"),
            "ip_address": member.ip,
            "user_agent": member.agent,
        }
        if form is not None:
            evidence["form_id"] = form
        fields: dict[str, Any] = {
            "subject": member.ref,
            "purposes": purposes,
            "policy_version": version,
            "collection_method": method,
            "evidence": evidence,
        }
        if contact is not None:
            fields["contact"] = contact
        expiry = at + timedelta(days=395) if expires and kind == "given" else None
        if expiry is not None:
            fields["expires_at"] = _iso(expiry)
        if guardian is not None and kind == "given":
            fields["guardian"] = guardian
        if late:
            fact = {"type": f"consent.{kind}", "event_id": "", "occurred_at": _iso(at), **fields}
            self.late.append(fact)
        else:
            self.add(at, f"consent.{kind}", **fields)
        for purpose in purposes:
            member.decisions.setdefault(purpose, []).append(
                _Decision(at, kind, version, expiry, late)
            )
            member.decisions[purpose].sort(key=lambda d: d.at)

    def status(self, member: _Member, purpose: str, at: datetime, *, known: bool = True) -> str:
        """Consent for ``purpose`` at ``at``, as the projections decide it; ``known``: only from
        the facts the emitting service knew of then (not the ones recorded late)."""
        last: _Decision | None = None
        for decision in member.decisions.get(purpose, []):
            if decision.at > at:
                break
            if not (known and decision.late):
                last = decision
        if last is None:
            return "none"
        if last.kind != "given":
            return last.kind
        if last.expires is not None and last.expires <= at:
            return "expired"
        if self.effective[last.version] < self.material.effective <= at:
            return "renewal_required"
        if member.minor and not self.by_version[last.version].guardian_consent_allowed:
            return "guardian_not_allowed"  # a parent's consent, under a version that refuses it
        return "given"

    def _members_before(self, at: datetime) -> list[_Member]:
        return [m for m in self.members if m.signup < at]

    def _valid(self, at: datetime, purpose: str) -> list[_Member]:
        return [m for m in self._members_before(at) if self.status(m, purpose, at) == "given"]

    def _pick(
        self, members: Iterable[_Member], count: int, rng: random.Random | None = None
    ) -> list[_Member]:
        pool = list(members)
        chosen = (rng or self.rng).sample(pool, min(count, len(pool)))
        return sorted(chosen, key=lambda m: m.index)

    def _withdrawal_request(self) -> _Member:
        """A member who asks, through support, to stop all marketing (withdrawn at once)."""
        at = self.day(14, 10, 12)
        candidates = [m for m in self._valid(at, EMAIL) if not m.minor]
        member = self._pick(candidates or self._members_before(at), 1)[0]
        self.decide(
            member,
            at + timedelta(hours=2),
            "withdrawn",
            [EMAIL, SMS],
            self.version_at(at),
            "email",
            notice="support-request",
        )
        return member

    def _late_withdrawals(self) -> None:
        """Opt-out forms sent by post: they occurred on the day signed, recorded weeks later."""
        signed = self.day(17, 8)
        last_newsletter = self.month(12)
        candidates = [
            m
            for m in self._valid(signed, EMAIL)
            if self.status(m, EMAIL, last_newsletter) == "given"
            and all(d.at <= signed for d in m.decisions[EMAIL])
        ]
        for member in self._pick(candidates, 2):
            self.decide(
                member,
                signed + timedelta(minutes=member.index % 50),
                "withdrawn",
                [EMAIL],
                self.version_at(signed),
                "paper",
                notice="postal-opt-out-form",
                late=True,
            )

    # -- disclosures -------------------------------------------------------------------------

    def month(self, k: int) -> datetime:
        """The monthly disclosures run at 02:00 UTC every 30 days."""
        return self.start + timedelta(days=30 * k, hours=2)

    def _disclosures(self) -> None:
        for k in range(1, 13):
            at = self.month(k)
            members = self._members_before(at)
            hosted = [m for m in members if self.month(k - 1) <= m.signup]
            if k == 1:
                hosted = members
            self.disclose(
                f"dsc-m{k:02d}-nimbus",
                at,
                "rcp-nimbus-cloud",
                "delegated_processing",
                hosted,
                ["account.identifiers", "contact.email", "usage.logs"],
                "service_provision",
                "contract",
            )
            self.disclose(
                f"dsc-m{k:02d}-paystream",
                at + timedelta(minutes=5),
                "rcp-paystream",
                "sharing",
                [m for m in members if self.rng.random() < 0.08],
                ["account.identifiers", "payment.transactions"],
                "service_provision",
                "contract",
            )
            self.disclose(
                f"dsc-m{k:02d}-helpline",
                at + timedelta(minutes=10),
                "rcp-helpline-desk",
                "delegated_processing",
                [m for m in members if self.rng.random() < 0.04],
                ["account.identifiers", "contact.email", "support.tickets"],
                "customer_support",
                "contract",
            )
            analytics = self._valid(at, "usage_analytics")
            if k == 4:
                analytics += self.plant(
                    [
                        m
                        for m in members
                        if self.status(m, "usage_analytics", at) == "guardian_not_allowed"
                    ],
                    f"dsc-m{k:02d}-metricly",
                    "consent_missing",
                    "a minor whose parent consented under v1.x, which accepts no guardian's "
                    "consent; the analytics export counted the parent's consent",
                )
            self.disclose(
                f"dsc-m{k:02d}-metricly",
                at + timedelta(minutes=15),
                "rcp-metricly",
                "delegated_processing",
                analytics,
                ["usage.events", "device.identifiers"],
                "usage_analytics",
                "consent",
                de_identified=True,
            )
            audience = self._valid(at, ADS)
            if k == 9:
                stale = self._pick(
                    (m for m in members if self.status(m, ADS, at) in ("refused", "withdrawn")),
                    3,
                )
                audience += self.plant(
                    stale,
                    f"dsc-m{k:02d}-adbridge",
                    "consent_missing",
                    "refused or withdrew personalised-ads consent; a stale audience list "
                    "still named them",
                )
            self.disclose(
                f"dsc-m{k:02d}-adbridge",
                at + timedelta(minutes=20),
                "rcp-adbridge",
                "sharing",
                audience,
                ["online.cookie_id", "usage.pages_viewed"],
                ADS,
                "consent",
            )
            newsletter = self._valid(at, EMAIL)
            if k == 9:
                not_renewed = self._pick(
                    (m for m in members if self.status(m, EMAIL, at) == "renewal_required"), 2
                )
                newsletter += self.plant(
                    not_renewed,
                    f"dsc-m{k:02d}-mailforge",
                    "consent_missing",
                    "gave consent under v1.x and never renewed it after the material change "
                    "to v2.0; the newsletter went to the old list",
                )
            if k == 12:
                for m in newsletter:
                    if self.status(m, EMAIL, at, known=False) == "withdrawn":
                        self.plant(
                            [m],
                            f"dsc-m{k:02d}-mailforge",
                            "consent_missing",
                            "withdrew by a postal form that was recorded weeks later",
                        )
            self.disclose(
                f"dsc-m{k:02d}-mailforge",
                at + timedelta(minutes=25),
                "rcp-mailforge",
                "delegated_processing",
                newsletter,
                ["contact.email", "account.name"],
                EMAIL,
                "consent",
            )
            textwave = self.recipients["rcp-textwave-sms"]
            if textwave.terminated is not None and at < textwave.terminated:
                self.disclose(
                    f"dsc-m{k:02d}-textwave",
                    at + timedelta(minutes=30),
                    "rcp-textwave-sms",
                    "delegated_processing",
                    self._valid(at, SMS),
                    ["contact.phone"],
                    SMS,
                    "consent",
                )
        self._irregular_disclosures()

    def _irregular_disclosures(self) -> None:
        at = self.day(140, 9, 30)
        campaign = self.plant(
            self._pick(self._valid(at, SMS), 4),
            "dsc-textwave-late-campaign",
            "recipient_terminated",
            "an old scheduled SMS campaign still ran through the terminated processor",
        )
        self.disclose(
            "dsc-textwave-late-campaign",
            at,
            "rcp-textwave-sms",
            "delegated_processing",
            campaign,
            ["contact.phone"],
            SMS,
            "consent",
        )
        at = self.day(45, 14)
        upload = self.plant(
            self._pick(self._valid(at, EMAIL), 3),
            "dsc-leadlift-upload",
            "recipient_unregistered",
            "a marketer uploaded a list to a lead-enrichment vendor that was never registered",
        )
        self.disclose(
            "dsc-leadlift-upload",
            at,
            "rcp-leadlift",
            "sharing",
            upload,
            ["contact.email", "account.name"],
            EMAIL,
            "consent",
        )
        at = self.day(61, 3, 5)
        self.disclose(
            "dsc-emergency-119",
            at,
            "rcp-emergency-119",
            "sharing",
            self._pick(self._members_before(at), 1),
            ["account.identifiers", "contact.phone", "location.approximate"],
            "legal_requests",
            "vital_interest",
        )
        at = self.day(24, 15, 20)
        self.disclose(
            "dsc-police-0042",
            at,
            "rcp-police-cyber",
            "sharing",
            self._pick(self._members_before(at), 1),
            ["account.identifiers", "contact.phone", "usage.access_logs"],
            "legal_requests",
            "criminal_investigation",
        )
        self._policy_rule_violations()

    def _policy_rule_violations(self) -> None:
        """The seed policy's own rules broken, where an app would break them (members drawn
        from ``rules_rng``)."""
        at = self.day(52, 16)
        winback = self.plant(
            self._pick(
                (m for m in self._members_before(at) if self.status(m, EMAIL, at) != "given"),
                3,
                self.rules_rng,
            ),
            "dsc-mailforge-winback",
            "legal_basis_not_permitted",
            "a win-back mailing to members who had unsubscribed from, or never agreed to, the "
            "newsletter, sent to the e-mail processor citing legitimate interest: marketing "
            "e-mail rests on consent, and legitimate interest is none of the policy's exceptions",
        )
        self.disclose(
            "dsc-mailforge-winback",
            at,
            "rcp-mailforge",
            "delegated_processing",
            winback,
            ["contact.email", "account.name"],
            EMAIL,
            "legitimate_interest",
        )
        at = self.day(33, 11, 40)
        raw = self.plant(
            self._pick(self._members_before(at), 3, self.rules_rng),
            "dsc-helpline-raw-export",
            "not_de_identified",
            "a support engineer exported tickets to the support desk by hand, skipping the "
            "masking step: names, e-mail addresses and ticket text left as they were",
        )
        self.disclose(
            "dsc-helpline-raw-export",
            at,
            "rcp-helpline-desk",
            "delegated_processing",
            raw,
            ["account.identifiers", "contact.email", "support.tickets"],
            "customer_support",
            "contract",
            de_identified=False,
        )

    def plant(
        self, members: list[_Member], disclosure_id: str, verdict: str, why: str
    ) -> list[_Member]:
        for m in members:
            self.planted.append(Planted(disclosure_id, m.ref, verdict, why))
        return members

    def verdict(
        self,
        member: _Member,
        recipient_id: str,
        at: datetime,
        purpose: str,
        basis: str,
        kind: str,
        de_identified: bool,
    ) -> str:
        """The disclosure history's verdict for one row, from the facts (all of them)."""
        recipient = self.recipients[recipient_id]
        if recipient.registered is None or recipient.registered > at:
            return "recipient_unregistered"
        if recipient.terminated is not None and recipient.terminated <= at:
            return "recipient_terminated"
        declared = self.by_version[self.version_at(at)].basis(purpose)
        if basis not in ("consent", declared) and basis not in CONSENT_EXCEPTIONS:
            return "legal_basis_not_permitted"
        if basis == "consent" and self.status(member, purpose, at, known=False) != "given":
            return "consent_missing"
        if kind == "delegated_processing" and not de_identified:
            return "not_de_identified"
        return "consent_valid" if basis == "consent" else "lawful_exception"

    def disclose(
        self,
        disclosure_id: str,
        at: datetime,
        recipient_id: str,
        kind: str,
        members: list[_Member],
        categories: list[str],
        purpose: str,
        basis: str,
        *,
        de_identified: bool | None = None,
    ) -> list[str]:
        """One disclosure fact per 1,000 members (the catalogue's limit). ``de_identified``:
        by default, as the policy promises, data entrusted to a processor is, other data not."""
        if de_identified is None:
            de_identified = kind == "delegated_processing"
        ordered = sorted({m.index: m for m in members}.values(), key=lambda m: m.index)
        ids = []
        for part, first in enumerate(range(0, len(ordered), 1000)):
            chunk = ordered[first : first + 1000]
            did = disclosure_id if part == 0 else f"{disclosure_id}-part{part + 1}"
            self.add(
                at,
                "disclosure.recorded",
                disclosure_id=did,
                recipient_id=recipient_id,
                kind=kind,
                subjects=[m.ref for m in chunk],
                data_categories=categories,
                purpose=purpose,
                legal_basis=basis,
                de_identified=de_identified,
                destination_country=self.recipients[recipient_id].country,
                policy_version=self.version_at(at),
            )
            for m in chunk:
                verdict = self.verdict(m, recipient_id, at, purpose, basis, kind, de_identified)
                self.verdicts[verdict] += 1
            ids.append(did)
        return ids

    # -- the incident and the requests -------------------------------------------------------

    def _incident(self) -> tuple[str, datetime]:
        incident_id = "inc-helpline-01"
        ticket = self.day(21, 7, 40)
        alert = self.day(21, 6, 55)
        window_from = self.day(111)
        affected = sorted(
            {
                ref
                for t in self.timed
                if t.fact["type"] == "disclosure.recorded"
                and t.fact["recipient_id"] == "rcp-helpline-desk"
                and window_from <= t.at < ticket
                for ref in t.fact["subjects"]
            }
        )
        opened = self.add(
            ticket + timedelta(minutes=25),
            "incident.opened",
            incident_id=incident_id,
            detected_at=_iso(ticket),
            summary="An API token of the support desk's ticket export was found in a public code "
            "repository; the token could read ticket attachments and requester e-mail addresses.",
            recipient_id="rcp-helpline-desk",
            data_categories=["support.tickets", "contact.email"],
        )
        self.add(
            ticket + timedelta(hours=5, minutes=20),
            "incident.assessed",
            incident_id=incident_id,
            risk="high_risk",
            data_categories=["support.tickets", "contact.email"],
            likely_consequences="Tickets hold names, e-mail addresses and descriptions of "
            "account problems; the members concerned face a risk of targeted phishing.",
            affected_subjects=affected[:1000],
            affected_rule={
                "recipient_id": "rcp-helpline-desk",
                "disclosed_from": _iso(window_from),
                "disclosed_to": _iso(ticket),
            },
            approximate_subject_count=len(affected),
        )
        self.add(
            ticket + timedelta(hours=2, minutes=50),
            "incident.contained",
            incident_id=incident_id,
            measures="The token was revoked and every support-desk credential rotated; the "
            "export now needs a short-lived token bound to our network.",
        )
        self.add(
            ticket + timedelta(hours=41),
            "incident.authority_notified",
            incident_id=incident_id,
            authority="Personal Information Protection Commission (KR)",
            reference=f"PIPC-{ticket:%Y%m%d}-0113",
            dpo_contact="Data Protection Officer, Example Co., privacy@example.com, +82 2-555-0100",
        )
        self.add(
            ticket + timedelta(days=2, hours=3),
            "incident.subjects_notified",
            incident_id=incident_id,
            channel="email",
            subject_count=len(affected),
            message_digest=_digest(f"breach notice {incident_id}"),
        )
        self.add(
            ticket + timedelta(days=1, hours=2),
            "correction.recorded",
            corrects_event_id=opened,  # resolved to its event id once ids are given
            reason="The detection time was copied from the ticket; the secret-scanning alert "
            "fired 45 minutes earlier.",
            corrected_fields={"detected_at": _iso(alert)},
        )
        return incident_id, alert

    def _requests(self, withdrawing: _Member) -> list[str]:
        """Requests; returns the open ones, the overdue one first."""
        pool = [
            m for m in self._members_before(self.day(120)) if not m.minor and m is not withdrawing
        ]
        access, erasure, rectification, overdue, cancel, recent = self._pick(pool, 6)

        def step(request_id: str, member: _Member, at: datetime, name: str, **f: Any) -> None:
            self.add(at, f"request.{name}", request_id=request_id, subject=member.ref, **f)

        step(
            "rq-0101",
            access,
            self.day(75, 8, 30),
            "received",
            kind="access",
            channel="in_app",
            details="Please send me a copy of my data and tell me who you shared it with.",
        )
        step("rq-0101", access, self.day(75, 8, 31), "identity_verified", method="in_app_session")
        step(
            "rq-0101",
            access,
            self.day(66, 16),
            "fulfilled",
            note="Export delivered in the app; it names every recipient of the member's data.",
        )
        step(
            "rq-0108",
            access,
            self.day(64, 9),
            "received",
            kind="access",
            channel="in_app",
            details="Send me the full export again, and every day from now on.",
        )
        step(
            "rq-0108",
            access,
            self.day(63, 15),
            "refused",
            ground="unnecessarily_repetitive",
            explanation="The full export was delivered two days ago (rq-0101) and nothing about "
            "the member has been recorded since; a daily copy is unnecessarily repetitive. A new "
            "export can be asked for in the app whenever the member's data changes.",
        )
        step(
            "rq-0102",
            erasure,
            self.day(48, 21, 3),
            "received",
            kind="erasure",
            channel="email",
            details="Delete my account and everything you have about me.",
            purposes=["service_provision", "community"],
        )
        step(
            "rq-0102",
            erasure,
            self.day(47, 9, 12),
            "identity_verified",
            method="email_link_and_sms_otp",
        )
        step(
            "rq-0102",
            erasure,
            self.day(40, 11),
            "extended",
            extension_days=15,
            reason="Payment records are involved; legal review is needed before we can answer.",
        )
        step(
            "rq-0102",
            erasure,
            self.day(30, 15, 45),
            "refused",
            ground="legal_obligation_to_retain",
            explanation="Payment records must be kept for five years under consumer-protection "
            "law; community posts and the profile were deleted, the rest will be when the "
            "period ends.",
        )
        step(
            "rq-0103",
            rectification,
            self.day(35, 13),
            "received",
            kind="rectification",
            channel="web_form",
            details="My e-mail address on file is misspelt.",
        )
        step("rq-0103", rectification, self.day(34, 10), "fulfilled", note="Address corrected.")
        step(
            "rq-0104",
            overdue,
            self.day(40, 19, 30),
            "received",
            kind="access",
            channel="email",
            jurisdiction="EU",
            details="Under Article 15 GDPR, I ask for a copy of all my personal data.",
        )
        step("rq-0104", overdue, self.day(39, 10), "identity_verified", method="email_link")
        step(
            "rq-0105",
            withdrawing,
            self.day(14, 10, 12),
            "received",
            kind="withdrawal",
            channel="email",
            details="Stop sending me marketing, by e-mail and by text.",
            purposes=[EMAIL, SMS],
        )
        step(
            "rq-0105",
            withdrawing,
            self.day(14, 12, 30),
            "fulfilled",
            note="Marketing consent withdrawn for e-mail and SMS.",
        )
        step(
            "rq-0106",
            cancel,
            self.day(9, 18),
            "received",
            kind="account_cancellation",
            channel="in_app",
        )
        step(
            "rq-0107",
            recent,
            self.day(2, 7, 45),
            "received",
            kind="access",
            channel="web_form",
            jurisdiction="KR",
            details="Which companies have received my data?",
        )
        return ["rq-0104", "rq-0106", "rq-0107"]
