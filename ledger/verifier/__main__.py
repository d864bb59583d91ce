"""``python -m ledger.verifier BUNDLE --key VKEY [--previous CHECKPOINT] [--jobs N]``: check a
bundle offline. ``python -m ledger.verifier receipt FILE --key VKEY [--consistent-with FILE]``:
check a consent receipt offline (:mod:`ledger.verifier.receipt`); ``--consistent-with`` takes
the answer of ``GET /v1/proofs/consistency?from=<the receipt's tree size>`` (it carries the
latest checkpoint), saved later, to show the entry was never removed.

Needs the Python standard library and PyNaCl only. ``--key`` is the ledger's verifier key in
the C2SP form ``<origin>+<hex key hash>+<base64 key>``, or a file holding one a line (as
``consent-ledger keys`` prints them); ``--previous`` a checkpoint you hold already (a file);
``--jobs`` the processes that check signatures and hashes (default: one per CPU). Prints what
it checked; exits 1 naming the first failure, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ledger.verifier.bundle import BundleError, default_jobs, verify_bundle
from ledger.verifier.note import NoteError, Verifier, parse_verifier_key
from ledger.verifier.receipt import (
    ReceiptError,
    check_consistency,
    check_receipt,
    load_receipt,
)


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


def receipt_main(argv: list[str]) -> int:
    """``receipt FILE --key KEY``: exit 0 when every check passes, 1 naming the failed one."""
    parser = argparse.ArgumentParser(
        prog="python -m ledger.verifier receipt",
        description="Verify a Consent Ledger consent receipt (JSON or DPV JSON-LD) offline.",
    )
    parser.add_argument("file", type=Path, help="the receipt, as GET /v1/consent/receipts/{seq}")
    parser.add_argument(
        "--key",
        action="append",
        required=True,
        help="a verifier key you trust (C2SP form, as GET /v1/keys lists) or a file of them",
    )
    parser.add_argument(
        "--consistent-with",
        type=Path,
        help="a later GET /v1/proofs/consistency?from=<tree size> answer (JSON, with checkpoint)",
    )
    args = parser.parse_args(argv)
    try:
        keys = trusted_keys(args.key)
    except (NoteError, OSError) as exc:
        parser.error(f"--key: {exc}")
    try:
        raw = args.file.read_bytes()
    except OSError as exc:
        parser.error(f"{args.file}: {exc}")
    later = None
    if args.consistent_with is not None:
        try:
            later = json.loads(args.consistent_with.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            parser.error(f"--consistent-with: {exc}")
    try:
        document = load_receipt(raw)
        report = check_receipt(document, keys)
        if later is not None:
            if not isinstance(later, dict):
                raise ReceiptError("consistency", "the answer is not a JSON object")
            check_consistency(report, document, later, keys)
    except ReceiptError as exc:
        print(f"FAILED {exc}", file=sys.stderr)
        return 1
    for line in report.checked:
        print(f"ok  {line}")
    print(f"VERIFIED {args.file}: {report.type} at seq {report.seq} in {report.origin}")
    return 0


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["receipt"]:
        return receipt_main(arguments[1:])
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
    args = parser.parse_args(arguments)
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
