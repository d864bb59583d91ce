"""``python -m ledger.verifier BUNDLE --key VKEY [--previous CHECKPOINT] [--jobs N]``: check a
bundle offline.

Needs the Python standard library and PyNaCl only. ``--key`` is the ledger's verifier key in
the C2SP form ``<origin>+<hex key hash>+<base64 key>``, or a file holding one a line (as
``consent-ledger keys`` prints them); ``--previous`` a checkpoint you hold already (a file);
``--jobs`` the processes that check signatures and hashes (default: one per CPU). Prints what
it checked; exits 1 naming the first failure, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ledger.verifier.bundle import BundleError, default_jobs, verify_bundle
from ledger.verifier.note import NoteError, Verifier, parse_verifier_key


def trusted_keys(values: list[str]) -> list[Verifier]:
    """Verifier keys given as text or as files of one key a line."""
    lines: list[str] = []
    for value in values:
        path = Path(value)
        if path.is_file():
            lines += path.read_text(encoding="utf-8").splitlines()
        else:
            lines.append(value)
    return [parse_verifier_key(line.strip()) for line in lines if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ledger.verifier",
        description="Verify a Consent Ledger export bundle offline.",
    )
    parser.add_argument("bundle", type=Path, help="the bundle: a directory or a .zip")
    parser.add_argument(
        "--key",
        action="append",
        required=True,
        help="a verifier key you trust (C2SP form) or a file of them; repeatable",
    )
    parser.add_argument(
        "--previous", type=Path, help="a checkpoint you already hold: the bundle must extend it"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=default_jobs(),
        help="processes checking the leaves and events (default: one per CPU, here %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs: at least 1")
    try:
        keys = trusted_keys(args.key)
    except (NoteError, OSError) as exc:
        parser.error(f"--key: {exc}")
    previous = None
    if args.previous is not None:
        try:
            previous = args.previous.read_text(encoding="utf-8")
        except OSError as exc:
            parser.error(f"--previous: {exc}")
    try:
        report = verify_bundle(args.bundle, keys, previous, jobs=args.jobs)
    except BundleError as exc:
        print(f"FAILED {exc}", file=sys.stderr)
        return 1
    for line in report.checked:
        print(f"ok  {line}")
    print(f"VERIFIED {args.bundle}: {report.entries} events of scope {report.scope}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
