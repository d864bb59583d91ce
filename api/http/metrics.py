"""Prometheus metrics: appends, batch sizes, commit latency, checkpoints, read-model lag,
overdue requests and incidents, notices to recipients owed, undelivered, unacknowledged and
overdue (by recipient and reason: the recipients are the controller's own list, never a
subject).

Counters of the ledger and the read models are read when Prometheus scrapes (a collector),
so nothing on the append path waits for them. No label carries a subject or a token. A
read model's query that fails (its register cannot be read) leaves its own gauge out, never
the others: the read models' positions and failures are always there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ledger.application import LedgerApplication
from projections.queries import Queries, error_message

logger = logging.getLogger("consent_ledger.metrics")


class LedgerCollector(Collector):
    def __init__(self, queries: Queries) -> None:
        self.queries = queries

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "ledger_head", "Sequence number of the newest event", self.queries.head()
        )
        now = datetime.now(UTC)
        latest = self.queries.latest_checkpoint()
        yield GaugeMetricFamily(
            "ledger_checkpoint_size",
            "Tree size of the latest signed checkpoint",
            latest.size if latest else 0,
        )
        if latest is not None and latest.signed_at is not None:
            signed = datetime.fromisoformat(latest.signed_at)
            yield GaugeMetricFamily(
                "ledger_checkpoint_age_seconds",
                "Seconds since the latest checkpoint was signed (alert when events wait)",
                max(0.0, (now - signed).total_seconds()),
            )
        yield from _gauge(
            "ledger_requests_overdue",
            "Data-subject requests still open past their due date",
            lambda: len(self.queries.requests(overdue_only=True)),
        )
        yield from _gauge(
            "ledger_incidents_authority_overdue",
            "Incidents not notified to the authority past their deadline (GDPR 33: 72 hours)",
            lambda: sum(1 for i in self.queries.incidents() if i.authority_overdue),
        )
        yield from _notice_gauges(self.queries)
        lag = GaugeMetricFamily(
            "ledger_projection_lag_events",
            "Events a read model has still to process",
            labels=["projection"],
        )
        lag_seconds = GaugeMetricFamily(
            "ledger_projection_lag_seconds",
            "How far behind a read model is, in seconds",
            labels=["projection"],
        )
        position = GaugeMetricFamily(
            "ledger_projection_position",
            "Sequence number of the last event a read model processed",
            labels=["projection"],
        )
        failed = GaugeMetricFamily(
            "ledger_projection_failed",
            "1 when a read model stopped at an event it cannot process",
            labels=["projection"],
        )
        failed_seq = GaugeMetricFamily(
            "ledger_projection_failed_seq",
            "Sequence number of the event a stopped read model fails on",
            labels=["projection"],
        )
        failure = GaugeMetricFamily(
            "ledger_projection_failure",
            "1 for each stopped read model, naming the event type and the error class "
            "(the message: /readyz, `projections status`)",
            labels=["projection", "event_type", "error"],
        )
        attempts = GaugeMetricFamily(
            "ledger_projection_failure_attempts",
            "Times the runner tried a stopped read model's event and failed",
            labels=["projection"],
        )
        for status in self.queries.status():
            lag.add_metric([status.name], status.lag_events)
            lag_seconds.add_metric([status.name], status.lag_seconds)
            position.add_metric([status.name], status.position)
            failed.add_metric([status.name], 1 if status.error else 0)
            if status.failure is not None:
                failed_seq.add_metric([status.name], status.failure.seq)
                failure.add_metric(
                    [status.name, status.failure.event_type, status.failure.error_class], 1
                )
                attempts.add_metric([status.name], status.failure.attempts)
        yield from (lag, lag_seconds, position, failed, failed_seq, failure, attempts)


NOTICE_GAUGES = (
    ("owed", "Notices to recipients recorded as due (GDPR 19)"),
    ("undelivered", "Notices to recipients not delivered yet (the outbox retries them)"),
    ("unacknowledged", "Notices to recipients the recipient has not acknowledged"),
    (
        "overdue",
        "Notices to recipients not acknowledged within CONSENT_LEDGER_NOTICE_OVERDUE_HOURS",
    ),
)
"""``ledger_notices_<state>``, labelled ``recipient_id`` and ``reason``."""


def _notice_gauges(queries: Queries) -> Iterator[GaugeMetricFamily]:
    """The notices by state, recipient and reason, read from the outbox when scraped; left
    out (with a log line) when it cannot be read, as the other registers' gauges are."""
    try:
        counts = queries.notice_counts()
    except Exception as exc:
        logger.warning("notice metrics left out: %s: %s", type(exc).__name__, error_message(exc))
        return
    for state, documentation in NOTICE_GAUGES:
        gauge = GaugeMetricFamily(
            f"ledger_notices_{state}", documentation, labels=["recipient_id", "reason"]
        )
        for count in counts:
            gauge.add_metric([count.recipient_id, count.reason], getattr(count, state))
        yield gauge


def _gauge(
    name: str, documentation: str, value: Callable[[], float]
) -> Iterator[GaugeMetricFamily]:
    """The gauge, unless computing it fails (a register that cannot be read): then none, and
    a log line, so the rest of ``/metrics`` still answers."""
    try:
        measured = value()
    except Exception as exc:
        logger.warning("metric %s left out: %s: %s", name, type(exc).__name__, error_message(exc))
        return
    yield GaugeMetricFamily(name, documentation, measured)


class Metrics:
    def __init__(self, ledger: LedgerApplication, queries: Queries) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "ledger_events_appended",
            "Events accepted by POST, new or repeated (idempotent retries)",
            ["outcome"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "ledger_append_batch_size",
            "Events per append request",
            buckets=(1, 2, 5, 10, 50, 100, 250, 500, 1000),
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "ledger_commit_seconds",
            "Duration of one group commit (signing, writing, fsync)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.registry,
        )
        self.commit_events = Histogram(
            "ledger_commit_events",
            "Events sharing one commit",
            buckets=(1, 2, 5, 10, 50, 100, 500, 2000),
            registry=self.registry,
        )
        # The labelled children once: ``labels()`` takes a lock and builds a key per call,
        # and appended() runs on the event loop for every append.
        self._new = self.events.labels("new")
        self._repeated = self.events.labels("repeated")
        self.registry.register(LedgerCollector(queries))
        self.registry.register(_RefusedCollector(ledger))
        ledger.observe_commits(self._observe_commit)

    def _observe_commit(self, seconds: float, events: int) -> None:
        self.commit_seconds.observe(seconds)
        self.commit_events.observe(events)

    def appended(self, new: int, repeated: int) -> None:
        self.batch_size.observe(new + repeated)
        if new:
            self._new.inc(new)
        if repeated:
            self._repeated.inc(repeated)


class _RefusedCollector(Collector):
    """Appends the ledger refused by push-back (503, ``Retry-After``): read when scraped."""

    def __init__(self, application: LedgerApplication) -> None:
        self.application = application

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "ledger_appends_refused",
            "Appends refused because the ledger's bound of events in flight was reached",
            self.application.appends_refused,
        )
