"""The console's sign-in sessions: an opaque random id in the browser, the token in memory.

The cookie holds a 256-bit random session id, never the API token: a cookie copied from a
browser (or a log) is not a token that works against the API, it dies with the session (sign
out, an hour idle, eight hours at most, or a restart), and the id is kept here only as its
SHA-256, so a memory dump of the session table gives no cookie either. The token stays in this
process's memory, and every page asks the token store about it again
(:func:`api.http.deps.authorise`), so a revoked client's session stops at its next page.

Each session carries its own CSRF token (a synchronizer token): every form of the console
holds it in a hidden field and every POST is refused unless the field matches.

Sessions live in one process: behind ``serve --workers N`` a browser must keep to one worker
(sticky sessions) or sign in again when it lands on another.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

IDLE_SECONDS = 3600.0
"""A session unused this long is closed."""
MAX_SECONDS = 8 * 3600.0
"""A session is closed this long after sign-in, however busy."""
MAX_SESSIONS = 10_000
"""Sessions kept at once; signing in past this closes the oldest (memory stays bounded)."""


@dataclass
class Session:
    """One signed-in browser: the token it signed in with and its CSRF token."""

    token: str
    csrf: str
    started: float
    seen: float


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class Sessions:
    """The sessions of this process, by the SHA-256 of their id (thread-safe)."""

    def __init__(
        self,
        idle_seconds: float = IDLE_SECONDS,
        max_seconds: float = MAX_SECONDS,
        max_sessions: int = MAX_SESSIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle_seconds = idle_seconds
        self.max_seconds = max_seconds
        self.max_sessions = max_sessions
        self.clock = clock
        self._lock = threading.Lock()
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def open(self, token: str) -> tuple[str, Session]:
        """A new session for ``token``: its id (for the cookie, shown nowhere else) and it."""
        session_id = secrets.token_urlsafe(32)
        now = self.clock()
        session = Session(token, secrets.token_urlsafe(32), now, now)
        with self._lock:
            self._sessions[_key(session_id)] = session
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        return session_id, session

    def find(self, session_id: str | None) -> Session | None:
        """The live session of ``session_id``, marked as used now; None if there is none."""
        if not session_id or len(session_id) > 128:
            return None
        key = _key(session_id)
        now = self.clock()
        with self._lock:
            session = self._sessions.get(key)
            if session is None:
                return None
            if now - session.seen > self.idle_seconds or now - session.started > self.max_seconds:
                del self._sessions[key]
                return None
            session.seen = now
            return session

    def close(self, session_id: str | None) -> None:
        """Forget the session (sign out); nothing happens for an unknown id."""
        if session_id:
            with self._lock:
                self._sessions.pop(_key(session_id), None)

    def __len__(self) -> int:
        return len(self._sessions)
