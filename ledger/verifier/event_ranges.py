"""``events.tsv`` checked by byte ranges: each worker process reads its own part of the file.

The verifier cuts ``events.tsv`` into ranges of bytes (:func:`event_ranges`); a range holds the
lines that start inside it, so a worker seeks to the range's first byte, skips to the start of
the next line (unless the range starts the file) and reads lines until one starts at or past
the range's end. It takes each line's leaf from ``leaves.bin`` itself, by seeking to the
nearest leaf whose offset the leaves check noted (every ``2^level``-th) and stepping forward.
Nothing of the events crosses a pipe but each range's outcome (:class:`RangeResult`): the
lines it held, the indexes of their events, what the scope's closure learnt, and its first
failure. The main process joins the outcomes in log order; what needs two ranges (an index
not above the one before it, across the boundary) and the line numbers are its part.

Each line is checked in this order, and the first failure in the file is named: its index
(a line that is not an event), its order after the line before, its place in the checkpoint's
tree, then the event itself (:class:`ledger.verifier.events.EventChecker`). Standard library
and PyNaCl only.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ledger.verifier import events
from ledger.verifier.entry import HEADER_SIZE, TAG_SIZE
from ledger.verifier.events import EVENTS, EventLineError, line_index
from ledger.verifier.scopes import Closure

LINE_BYTES = 512
"""Bytes of ``events.tsv`` per event a range is cut for (a line is 500 to 1,000 bytes)."""
LEAVES_NAME = "leaves.bin"


@dataclass(frozen=True)
class EventRange:
    """A part of ``events.tsv`` to check: the lines that start in ``[start, end)``."""

    directory: str
    """Where ``events.tsv`` and ``leaves.bin`` are."""
    start: int
    end: int
    size: int
    """The checkpoint's tree size: an index at or past it is outside the tree."""
    level: int
    leaf_starts: bytes
    """``array("q")`` of the byte offset in ``leaves.bin`` of every ``2^level``-th leaf."""


@dataclass
class RangeResult:
    lines: int = 0
    """Lines read in the range (up to and including a failing one)."""
    first: int | None = None
    """The index of the range's first line, when it has one."""
    last: int = -1
    """The index of the range's last line checked."""
    indexes: bytes = b""
    """``array("q")`` of the indexes of the range's events, in order."""
    closure: tuple[set[str], list[Any], list[Any]] = field(default_factory=lambda: (set(), [], []))
    error: tuple[str, str] | None = None
    """(the check, what failed) of the first failure, as ``BundleError`` takes them."""
    error_line: int | None = None
    """When the failure is of a line that is not an event: that line, from 0 in the range
    (the main process, which counts the lines before the range, names its number)."""


def event_ranges(
    directory: Path, size: int, level: int, leaf_starts: array[int], range_bytes: int
) -> Iterator[EventRange]:
    """``events.tsv`` of ``directory`` cut into ranges of ``range_bytes`` bytes."""
    length = (directory / EVENTS).stat().st_size
    starts = leaf_starts.tobytes()
    for first in range(0, length, range_bytes):
        end = min(length, first + range_bytes)
        yield EventRange(str(directory), first, end, size, level, starts)


def check_event_range(task: EventRange) -> RangeResult:
    """Check the events of one range (in a worker process started by
    :func:`ledger.verifier.events.start_worker`, or in this one)."""
    checker = events.checker()
    result = RangeResult()
    closure = Closure(checker.scope)
    indexes: array[int] = array("q")
    directory = Path(task.directory)
    with (directory / EVENTS).open("rb") as file, (directory / LEAVES_NAME).open("rb") as raw:
        if task.start:
            file.seek(task.start - 1)
            file.readline()  # the end of the line that started before the range
        at = file.tell()
        leaves = _Leaves(raw, task.leaf_starts, task.level)
        number, last = 0, -1
        while at < task.end:
            line = file.readline()
            if not line:
                break
            at += len(line)
            result.lines = number + 1
            try:
                index = line_index(line)
            except EventLineError as exc:
                result.error, result.error_line = (EVENTS, str(exc)), number
                break
            if number == 0:
                result.first = index
            elif index <= last:
                result.error = (
                    f"entry {index}",
                    f"comes after entry {last}: entries are out of order or repeated",
                )
                break
            if index >= task.size:
                result.error = (
                    f"entry {index}",
                    f"is outside the checkpoint's tree of size {task.size}",
                )
                break
            last = index
            leaf = leaves.leaf(index)
            if leaf is None:
                result.error = (LEAVES_NAME, f"has no leaf {index}")
                break
            problem = checker.check_one(index, leaf, line, closure)
            if problem is not None:
                check, message = problem
                result.error = problem
                if check == EVENTS:
                    result.error, result.error_line = (EVENTS, message), number
                break
            indexes.append(index)
            number += 1
        result.last = last
    result.indexes = indexes.tobytes()
    result.closure = closure.state()
    return result


class _Leaves:
    """Leaves of ``leaves.bin`` by ascending index, found from the nearest noted offset."""

    def __init__(self, file: IO[bytes], starts: bytes, level: int) -> None:
        self.file = file
        self.starts: array[int] = array("q")
        self.starts.frombytes(starts)
        self.level = level
        self.next = -1
        """The index of the leaf at the file's position (-1: none yet)."""

    def leaf(self, index: int) -> bytes | None:
        base = (index >> self.level) << self.level
        if self.next < 0 or index < self.next or base > self.next:
            chunk = index >> self.level
            if chunk >= len(self.starts):
                return None
            self.file.seek(self.starts[chunk])
            self.next = base
        read = self.file.read
        while True:
            header = read(HEADER_SIZE)
            if len(header) < HEADER_SIZE:
                return None
            tags = read(TAG_SIZE * int.from_bytes(header[-2:], "big"))
            self.next += 1
            if self.next - 1 == index:
                return header + tags
