"""The committer process: one process writes the log for every API worker of a ``serve``.

With ``CONSENT_LEDGER_COMMITTER=process``, ``consent-ledger serve`` starts this process before
its workers. Each worker still validates, seals and builds its units of work (on its own core),
and its recorder still gathers them into groups (:class:`ledger.recorder.LedgerRecorder`); but
instead of signing and committing a group itself, under its one GIL shared with the HTTP loop,
it hands the group to this process over a local socket (:class:`CommitterLink`) and waits for
the answer. Here one recorder, the only writer, takes the groups of every worker into one
group commit: it numbers, signs and writes the events, grows the tree and commits
(:class:`CommitterServer`), then answers each unit with its sequence numbers, entries and
signatures, or why it was refused.

Nothing about the guarantees moves: the commit protocol is the recorder's own, run here; a
worker answers with a receipt only after this process said "committed". If this process dies
with a group in hand, the workers that sent it answer ``503``: whether it committed is not
known to them, and the sender's retry with the same event id is answered from the claim if it
did (idempotency), stored if it did not.

The socket is an abstract Unix socket (no file; Linux), and a connection must prove it knows
the key in ``$TMPDIR/consent-ledger-*/committer-<name>.key`` (mode 0600 in a 0700 directory,
made for each start of ``serve``, removed at its end) before anything is read from it: what
arrives is unpickled, so only this user's processes may speak.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import pickle
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from ledger.errors import StorageError, SubjectErasedError
from ledger.log_reads import LogRecord
from ledger.mapper import LedgerStoredEvent
from ledger.recorder import LedgerRecorder, Outcome
from ledger.signing import write_private_file
from ledger.storage import StorageSpec, open_recorder
from ledger.unit_of_work import Claim, UnitOfWork

logger = logging.getLogger("consent_ledger.committer")

ADDRESS_VARIABLE = "CONSENT_LEDGER_COMMITTER_ADDRESS"
"""Set by ``serve`` for its workers: the committer's key file, which names its socket (not a
setting of its own)."""

Answer = tuple[Any, ...]
"""One unit's outcome on the wire: ``("ok", [(seq, entry, signature), ...], key_id)``,
``("integrity", message)``, ``("erased", pseudonyms)`` or ``("storage", message)``."""


@dataclass(frozen=True)
class CommitterAddress:
    """Where a committer listens, and the key a connection must know."""

    key_file: Path
    """The key, in a directory of its own (mode 0700) under the temporary directory; the
    socket is named after the file."""

    @classmethod
    def new(cls) -> CommitterAddress:
        """A fresh name and key, the key written 0600 in a new 0700 directory under the
        temporary directory (``TMPDIR``: writable in a read-only container with a tmpfs)."""
        directory = Path(tempfile.mkdtemp(prefix="consent-ledger-"))
        key_file = directory / f"committer-{secrets.token_hex(8)}.key"
        write_private_file(key_file, secrets.token_bytes(32))
        return cls(key_file)

    @classmethod
    def from_environment(cls) -> CommitterAddress | None:
        """The committer ``serve`` started for this worker, if any."""
        key_file = os.environ.get(ADDRESS_VARIABLE)
        if not key_file:
            return None
        if not Path(key_file).is_file():  # serve writes it before any worker starts
            raise StorageError(
                f"{ADDRESS_VARIABLE}={key_file[:200]!r} names no committer key file; it is set "
                "by `consent-ledger serve` for its workers, not by hand"
            )
        return cls(Path(key_file))

    @property
    def socket(self) -> str:
        """The abstract socket's address (a leading NUL: no file)."""
        return f"\0consent-ledger-{self.key_file.stem}"

    def key(self) -> bytes:
        return self.key_file.read_bytes()

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.key_file.unlink()
        with contextlib.suppress(OSError):  # not empty, or gone: not ours to force
            self.key_file.parent.rmdir()


# -- the wire: units out, outcomes back ------------------------------------------------------

Wire = tuple[Any, ...]
"""A unit of work on the wire: plain tuples, a third cheaper to pickle than the objects."""


def encode_work(work: UnitOfWork) -> Wire:
    """``work`` as tuples of strings, bytes and numbers."""
    return (
        [
            (
                _uuid_bytes(e.originator_id),
                e.originator_version,
                e.topic,
                e.state,
                tuple(getattr(e, "scopes", ())),
            )
            for e in work.stored_events
        ],
        [(c.event_id, c.digest, c.position) for c in work.claims],
        dict(work.new_keys),
        dict(work.new_names),
        tuple(work.sealed_under),
        tuple(work.erase),
        dict(work.lifecycles),
    )


def _uuid_bytes(originator_id: UUID | str) -> bytes:
    return (originator_id if isinstance(originator_id, UUID) else UUID(originator_id)).bytes


def decode_work(wire: Wire) -> UnitOfWork:
    """The unit of work :func:`encode_work` sent."""
    events, claims, new_keys, new_names, sealed_under, erase, lifecycles = wire
    return UnitOfWork(
        stored_events=[
            LedgerStoredEvent(
                originator_id=UUID(bytes=originator),
                originator_version=version,
                topic=topic,
                state=state,
                scopes=tuple(scopes),
            )
            for originator, version, topic, state, scopes in events
        ],
        claims=[Claim(event_id, digest, position) for event_id, digest, position in claims],
        new_keys=new_keys,
        new_names=new_names,
        sealed_under=frozenset(sealed_under),
        erase=frozenset(erase),
        lifecycles=lifecycles,
    )


def encode_outcome(outcome: Outcome) -> Answer:
    """What a worker needs of an outcome: the records' seq, entry and signature (it holds the
    bodies already), or the refusal."""
    if isinstance(outcome, SubjectErasedError):
        return ("erased", outcome.pseudonyms)
    if isinstance(outcome, IntegrityError):
        return ("integrity", str(outcome))
    if isinstance(outcome, BaseException):
        return ("storage", str(outcome))
    key_id = outcome[0].key_id if outcome else ""
    return ("ok", [(r.seq, r.entry, r.signature) for r in outcome], key_id)


def decode_outcome(work: UnitOfWork, answer: Answer) -> Outcome:
    """The records (or the error) of ``work`` from its answer."""
    kind = answer[0]
    if kind == "erased":
        return SubjectErasedError(list(answer[1]))
    if kind == "integrity":
        return IntegrityError(answer[1])
    if kind != "ok":
        return StorageError(str(answer[1]))
    signed, key_id = answer[1], answer[2]
    if len(signed) != len(work.stored_events):
        return StorageError("the committer answered for other events than those handed in")
    return [
        LogRecord(
            seq=seq,
            originator_id=str(event.originator_id),
            originator_version=event.originator_version,
            topic=event.topic,
            entry=entry,
            body=event.state,
            signature=signature,
            key_id=key_id,
        )
        for (seq, entry, signature), event in zip(signed, work.stored_events, strict=True)
    ]


# -- the worker's side -----------------------------------------------------------------------


class CommitterLink:
    """A worker's connections to the committer process: one per thread of the worker's
    recorder that hands groups over (:attr:`in_flight` of them), so that the next group
    travels while the last one commits."""

    in_flight = 2
    CONNECT_WAIT_S = 30.0
    """How long an append waits for a committer that is (re)starting before it is refused."""

    def __init__(self, address: CommitterAddress) -> None:
        self.address = address
        self._local = threading.local()
        self._connections: list[Connection] = []
        self._lock = threading.Lock()

    def commit(self, works: Sequence[UnitOfWork]) -> list[Outcome]:
        """Hand ``works`` over and wait until each is committed or refused; a lost connection
        is a :class:`StorageError` for all of them (whether they committed is not known)."""
        try:
            connection = self._connection()
            connection.send_bytes(
                pickle.dumps([encode_work(w) for w in works], pickle.HIGHEST_PROTOCOL)
            )
            # The committer proved it knows the key (the connection is authenticated).
            answers: list[Answer] = pickle.loads(connection.recv_bytes())  # noqa: S301
        except (OSError, EOFError, multiprocessing.AuthenticationError) as exc:
            self._drop()
            raise StorageError(
                "the committer process did not answer; whether these events were "
                f"committed is not known ({type(exc).__name__}: {exc})"
            ) from exc
        if len(answers) != len(works):
            raise StorageError("the committer answered for another number of units")
        return [decode_outcome(w, a) for w, a in zip(works, answers, strict=True)]

    def _connection(self) -> Connection:
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def _connect(self) -> Connection:
        """Connect, waiting up to :attr:`CONNECT_WAIT_S` for a committer that is starting."""
        deadline = time.monotonic() + self.CONNECT_WAIT_S
        while True:
            try:
                return Client(self.address.socket, family="AF_UNIX", authkey=self.address.key())
            except (ConnectionRefusedError, FileNotFoundError):
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)

    def _drop(self) -> None:
        """Forget this thread's connection (the next commit connects again)."""
        connection: Connection | None = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            with self._lock:
                self._connections.remove(connection)
            with contextlib.suppress(OSError):
                connection.close()

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.close()


# -- the committer's side ----------------------------------------------------------------------


class CommitterServer:
    """Answers every worker's groups with one recorder (one group commit for all of them)."""

    def __init__(self, recorder: LedgerRecorder, address: CommitterAddress) -> None:
        self.recorder = recorder
        self.address = address
        self.listener = Listener(address.socket, family="AF_UNIX", authkey=address.key())
        self._stopping = threading.Event()
        self._connections: list[Connection] = []
        self._lock = threading.Lock()

    def serve(self) -> None:
        """Accept workers until :meth:`stop`; each is answered by a thread of its own."""
        while not self._stopping.is_set():
            try:
                connection = self.listener.accept()
            except multiprocessing.AuthenticationError:
                continue  # not one of ours: nothing was read from it
            except OSError:
                if self._stopping.is_set():
                    return
                raise
            with self._lock:
                self._connections.append(connection)
            threading.Thread(
                target=self._answer, args=(connection,), name="committer-link", daemon=True
            ).start()

    def _answer(self, connection: Connection) -> None:
        try:
            while True:
                # The worker proved it knows the key (accept() authenticated it).
                wires: list[Wire] = pickle.loads(connection.recv_bytes())  # noqa: S301
                outcomes = self.recorder.append_each([decode_work(w) for w in wires])
                answers = [encode_outcome(o) for o in outcomes]
                connection.send_bytes(pickle.dumps(answers, pickle.HIGHEST_PROTOCOL))
        except (OSError, EOFError):
            pass  # the worker went away
        except BaseException:
            # Never leave a worker waiting for an answer that will not come: it is told by the
            # connection closing (its appends then fail, whether committed is not known).
            logger.exception("the committer could not answer a worker")
        finally:
            with contextlib.suppress(OSError):
                connection.close()

    def stop(self) -> None:
        """Stop accepting; what was handed in is committed by ``recorder.close()``."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self.listener.close()


def run_committer(storage: StorageSpec, address: CommitterAddress, parent: Connection) -> None:
    """The committer process's body: a recorder on ``storage``
    (:func:`ledger.storage.open_recorder`; no catalogue, no aggregates: it only commits).

    It says "ready" on ``parent`` once it listens, and stops when ``parent`` says "stop" or
    closes (``serve`` ended, or died): it commits what it was handed, then exits. Ctrl-C and
    SIGTERM are for ``serve``, which drains its workers first and then stops this process, so
    that no worker loses its committer while it still has appends in hand.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    recorder = open_recorder(storage)
    server = CommitterServer(recorder, address)
    accepting = threading.Thread(target=server.serve, name="committer-accept", daemon=True)
    accepting.start()
    with contextlib.suppress(EOFError, OSError):  # OSError: serve is gone already
        parent.send("ready")
        while parent.recv() != "stop":
            pass
    server.stop()
    recorder.close()
    # An orderly end (serve stopped, or died): the key goes too, also when serve cannot take it.
    address.remove()


class CommitterProcess:
    """The committer process as ``serve`` runs it: started before the workers, stopped after
    them, and started again (at the same address) if it dies meanwhile, so that a crash costs
    the appends in flight (answered ``503``), never the ledger."""

    RESTART_PAUSE_S = 1.0

    def __init__(self, storage: StorageSpec, address: CommitterAddress) -> None:
        self.storage = storage
        self.address = address
        self.restarts = 0
        self._lock = threading.Lock()
        self._stopping = False
        self.process: subprocess.Popen[bytes] | None = None
        self._pipe: Connection | None = None
        self._watcher: threading.Thread | None = None

    def start(self, *, wait: bool = True) -> None:
        """Start it, and watch it (started again if it dies). With ``wait``, return once it
        listens, or raise why it could not; without, at once: the workers' first appends wait
        for it (:attr:`CommitterLink.CONNECT_WAIT_S`) while it opens the log."""
        with self._lock:
            self._launch()
        if wait:
            self._await_ready()
        self._watcher = threading.Thread(
            target=self._watch, args=(not wait,), name="committer-watch", daemon=True
        )
        self._watcher.start()

    def _launch(self) -> None:
        # A process of its own (`python -m ledger.committer`), not multiprocessing's spawn,
        # which would import the parent's main module again (the whole CLI and API: 2 s of
        # CPU); the storage travels over the pipe, not the command line (a database URL may
        # hold a password, and every user can read a command line).
        ours, theirs = socket.socketpair()
        process = subprocess.Popen(  # noqa: S603 (our interpreter, our module, a number)
            [sys.executable, "-m", "ledger.committer", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
        )
        theirs.close()
        pipe = Connection(ours.detach())
        with contextlib.suppress(OSError):  # it died at once: _await_ready says so
            pipe.send((self.storage, self.address))
        self.process, self._pipe = process, pipe

    def _await_ready(self) -> None:
        process, pipe = self.process, self._pipe
        assert process is not None and pipe is not None
        try:
            said = pipe.recv()
        except (EOFError, OSError) as exc:
            process.wait()
            raise StorageError(
                f"the committer process exited with status {process.returncode} before listening"
            ) from exc
        if said != "ready":
            raise StorageError(f"the committer process said {said!r} instead of ready")

    def _watch(self, starting: bool) -> None:
        while True:
            if starting:
                try:
                    self._await_ready()
                except StorageError as exc:
                    if not self._stopping:  # stopped while starting: it said nothing, rightly
                        logger.error("%s", exc)
            process = self.process
            assert process is not None
            process.wait()
            with self._lock:
                if self._stopping:
                    return
                logger.error(
                    "the committer process exited (status %s); starting it again",
                    process.returncode,
                )
                if self._pipe is not None:
                    self._pipe.close()
                time.sleep(self.RESTART_PAUSE_S)
                self._launch()
                self.restarts += 1
                starting = True

    def environment(self) -> dict[str, str]:
        """What a worker's environment needs to find it
        (:meth:`CommitterAddress.from_environment`)."""
        return {ADDRESS_VARIABLE: str(self.address.key_file)}

    def stop(self, timeout: float = 60.0) -> None:
        """Tell it to stop (it commits what it holds first) and wait for it."""
        with self._lock:
            self._stopping = True
            process, pipe = self.process, self._pipe
        if pipe is not None:
            # Read once it listens (a committer still starting reads it then); the pipe is
            # closed only after it exits, since the watcher may be waiting on it for "ready".
            with contextlib.suppress(OSError):
                pipe.send("stop")
        if process is not None:
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._watcher is not None:
            self._watcher.join(timeout)
        if pipe is not None:
            pipe.close()
        self.address.remove()


def main(argv: list[str]) -> None:
    """``python -m ledger.committer FD``: the committer, told its storage and address on the
    connection ``FD`` (a socket ``CommitterProcess`` passed down)."""
    parent = Connection(int(argv[0]))
    storage, address = parent.recv()
    run_committer(storage, address, parent)


if __name__ == "__main__":
    main(sys.argv[1:])
