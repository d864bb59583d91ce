"""How a notice leaves: an HTTP webhook, or a message on a RabbitMQ queue.

The dispatcher (:mod:`projections.notices`) hands each delivery here with its endpoint URL;
the scheme picks the transport. Both carry the same body and the same Standard Webhooks
headers (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``), so a recipient checks
a message from the bus exactly as it checks a webhook.

RabbitMQ (``amqp://`` or ``amqps://``): ``amqp://user:password@host:5672/vhost#queue``, the
fragment naming the recipient's queue, which the recipient declares (durable); the message goes
through the default exchange with ``mandatory`` set, persistent (``delivery_mode`` 2), its
``message_id`` the notice id, and the headers above as AMQP headers. The channel is in
publisher-confirm mode: a delivery counts only once the broker confirmed it (a nack, an
unroutable message, for a queue that does not exist, or a lost connection is a failed attempt,
tried again as a failed webhook is).

A webhook's answer is kept (its ``webhook-*`` headers and at most
:data:`ledger.notices.REPLY_MAX_BYTES` of its body, more is not read) for the dispatcher to
check for a signed acknowledgement; a message on a queue has no answer, so a recipient on the
bus acknowledges through the API.
"""

from __future__ import annotations

import contextlib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field

import pika
import pika.exceptions

from ledger.notices import REPLY_MAX_BYTES

WEBHOOK = "webhook"
AMQP = "amqp"


@dataclass(frozen=True)
class Sent:
    """What one attempt came to: delivered or not, the HTTP status (webhooks), and why not."""

    transport: str
    delivered: bool
    status: int | None = None
    error: str | None = None
    reply_headers: Mapping[str, str] = field(default_factory=dict)
    """A webhook's answer: its ``webhook-*`` headers, lower-cased (empty for a message)."""
    reply_body: bytes = b""
    """A webhook's answer: its body, when not longer than ``REPLY_MAX_BYTES`` (else empty)."""


def transport_of(url: str) -> str:
    return AMQP if url.startswith(("amqp://", "amqps://")) else WEBHOOK


def send(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Sent:
    """Deliver ``body`` with ``headers`` to ``url`` once."""
    if transport_of(url) == AMQP:
        return publish(url, body, headers, timeout)
    return post(url, body, headers, timeout)


def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Sent:
    """An HTTP POST; delivered when the answer is 2xx."""
    if not url.startswith(("http://", "https://")):
        return Sent(WEBHOOK, False, error="not an http(s) URL")
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")  # noqa: S310 (scheme checked)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status = int(response.status)
            answer = {
                k.lower(): v
                for k, v in response.headers.items()
                if k.lower().startswith("webhook-")
            }
            body = b""
            if 200 <= status < 300 and answer:  # only a signed answer is read
                try:
                    body = response.read(REPLY_MAX_BYTES + 1)
                except (OSError, ValueError):
                    body = b""  # the notice was delivered; its answer is no acknowledgement
    except urllib.error.HTTPError as exc:
        return Sent(WEBHOOK, False, int(exc.code), f"HTTP {exc.code}")
    except (OSError, ValueError) as exc:
        return Sent(WEBHOOK, False, error=type(exc).__name__)
    delivered = 200 <= status < 300
    return Sent(
        WEBHOOK,
        delivered,
        status,
        None if delivered else f"HTTP {status}",
        answer,
        body if len(body) <= REPLY_MAX_BYTES else b"",
    )


def publish(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Sent:
    """One persistent message to the queue the URL's fragment names, confirmed by the broker."""
    address, _, queue = url.partition("#")
    queue = urllib.parse.unquote(queue)
    if not queue:
        return Sent(AMQP, False, error="the URL names no queue (#queue)")
    try:
        parameters = pika.URLParameters(address)
    except (ValueError, TypeError) as exc:
        return Sent(AMQP, False, error=f"bad URL: {type(exc).__name__}")
    parameters.socket_timeout = timeout
    parameters.blocked_connection_timeout = timeout
    parameters.connection_attempts = 1
    try:
        connection = pika.BlockingConnection(parameters)
    except (pika.exceptions.AMQPError, OSError) as exc:
        return Sent(AMQP, False, error=type(exc).__name__)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(
            exchange="",
            routing_key=queue,
            body=body,
            properties=pika.BasicProperties(
                content_type=headers.get("content-type", "application/json"),
                delivery_mode=pika.DeliveryMode.Persistent,
                message_id=headers.get("webhook-id"),
                headers={k: v for k, v in headers.items() if k.startswith("webhook-")},
            ),
            mandatory=True,
        )
    except pika.exceptions.UnroutableError:
        return Sent(AMQP, False, error="unroutable: no such queue")
    except pika.exceptions.NackError:
        return Sent(AMQP, False, error="nacked by the broker")
    except (pika.exceptions.AMQPError, OSError) as exc:
        return Sent(AMQP, False, error=type(exc).__name__)
    finally:
        if connection.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                connection.close()
    return Sent(AMQP, True)


__all__ = ["AMQP", "WEBHOOK", "Sent", "post", "publish", "send", "transport_of"]
