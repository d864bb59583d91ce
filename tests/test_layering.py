"""Imports point one way: api -> projections -> ledger; the verifier stands alone."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {
    "ledger": {"ledger"},
    "projections": {"projections", "ledger"},
    "api": {"api", "projections", "ledger"},
}


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_packages_import_only_downwards() -> None:
    ours = set(ALLOWED)
    wrong = []
    for package, allowed in ALLOWED.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for module in imported_modules(path):
                top = module.split(".")[0]
                if top in ours and top not in allowed:
                    wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not wrong


def test_the_verifier_needs_only_the_standard_library_and_pynacl() -> None:
    stdlib = set(sys.stdlib_module_names)
    wrong = []
    for path in sorted((ROOT / "ledger" / "verifier").rglob("*.py")):
        for module in imported_modules(path):
            top = module.split(".")[0]
            if (
                top not in stdlib
                and top != "nacl"
                and module != "ledger.verifier"
                and not module.startswith("ledger.verifier.")
            ):
                wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not wrong


def test_ledger_package_init_stays_empty() -> None:
    """So that importing ledger.verifier loads nothing else of ours."""
    assert (ROOT / "ledger" / "__init__.py").read_text().strip() == ""
