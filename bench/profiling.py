"""py-spy profiles of the ledger's ``serve`` under load, and their summary (``--profile``)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from harness import ROOT


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def start_profile(
    pids: list[int], seconds: float, out: Path, idle: bool = False
) -> subprocess.Popen[bytes] | None:
    """py-spy record (raw collapsed stacks) of the serve process and its workers: the thread
    holding the GIL (``--gil``: where Python's one core goes), or with ``idle`` every
    thread's stack whether running or waiting (wall time: where requests wait)."""
    tool = py_spy()
    if tool is None:
        print("   (py-spy not installed: no profile; .venv/bin/pip install py-spy)")
        return None
    args = [tool, "record", "--pid", str(pids[0]), "--subprocesses", "--format", "raw"]
    args += ["--duration", f"{seconds:.0f}", "--rate", "100", "-o", str(out)]
    args.append("--idle" if idle else "--gil")
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarise_profile(raw: Path, top: int = 25) -> dict[str, Any]:
    """Self and total share of samples per function, from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        # With --subprocesses the first frame is 'process PID:"COMMAND LINE"', and a command
        # line may hold ';' (multiprocessing's spawn_main); thread frames come next.
        stack = re.sub(r'^(process \d+:"[^"]*"(;|$))+', "", stack)
        frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        samples += count
        own[_frame(frames[-1])] += count
        for name in {_frame(f) for f in frames}:
            total[name] += count

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / samples, 1)) for name, n in counter.most_common(top)]

    return {"samples": samples, "self": share(own), "total": share(total)}


def _frame(frame: str) -> str:
    """``function (path/to/file.py:123)`` -> ``function (file.py)``: one name per function."""
    found = re.match(r"(.*) \((.*?):\d+\)$", frame)
    if found is None:
        return frame
    path = found[2]
    for marker in ("site-packages/", "/work/main/", str(ROOT) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{found[1]} ({path})"
