"""Generate the TypeScript types from the app's own OpenAPI document, or check they are current.

::

    python clients/typescript/generate.py          # write openapi.json and src/schema.ts
    python clients/typescript/generate.py --check  # exit 1 naming what differs, write nothing

``openapi.json`` is ``create_app(...).openapi()`` with the default settings (never the
environment's, so the document is the same on every machine), and ``src/schema.ts`` is what
openapi-typescript (the version ``package-lock.json`` pins, installed by ``npm ci``) makes of
it. Both are committed, so a TypeScript user needs neither Python nor a running ledger, and
``tests/e2e/test_typescript_client.py`` runs ``--check`` so they cannot drift from the routes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOCUMENT = HERE / "openapi.json"
TYPES = HERE / "src" / "schema.ts"
GENERATOR = HERE / "node_modules" / ".bin" / "openapi-typescript"
FLAGS = ("--empty-objects-unknown", "--default-non-nullable=false")
"""A body the document declares only as ``{"type": "object"}`` is ``Record<string, unknown>``,
not openapi-typescript's default of an object that admits no key at all; and a field with a
default (a fact's optional field) stays optional in what a client sends, rather than
openapi-typescript's default of making it required."""


def openapi_document() -> bytes:
    """The OpenAPI document the app serves at ``/openapi.json``, with default settings."""
    from api.http.app import create_app
    from api.settings import ServerSettings
    from ledger.config import Settings

    document = create_app(Settings(), server=ServerSettings()).openapi()
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()


def write_types(document: Path, output: Path) -> None:
    """Run openapi-typescript on ``document``, writing ``output``."""
    if not GENERATOR.exists():
        raise SystemExit(f"{GENERATOR} is missing: run `npm ci` in {HERE}")
    subprocess.run(  # noqa: S603 (our own pinned tool, our own paths)
        [str(GENERATOR), str(document), "--output", str(output), *FLAGS],
        check=True,
        capture_output=True,
        cwd=HERE,
    )


def generate() -> None:
    DOCUMENT.write_bytes(openapi_document())
    write_types(DOCUMENT, TYPES)


def stale() -> list[str]:
    """The committed files that regenerating would change (none when both are current)."""
    differ = []
    fresh = openapi_document()
    if not DOCUMENT.exists() or DOCUMENT.read_bytes() != fresh:
        differ.append(f"{DOCUMENT.relative_to(HERE)} is not the app's OpenAPI document")
    with tempfile.TemporaryDirectory() as work:
        document, types = Path(work) / "openapi.json", Path(work) / "schema.ts"
        document.write_bytes(fresh)
        write_types(document, types)
        if not TYPES.exists() or TYPES.read_bytes() != types.read_bytes():
            differ.append(f"{TYPES.relative_to(HERE)} is not what openapi-typescript makes")
    return differ


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, write nothing")
    args = parser.parse_args(argv)
    if not args.check:
        generate()
        return 0
    differ = stale()
    for line in differ:
        print(f"{line}: run python clients/typescript/generate.py", file=sys.stderr)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
