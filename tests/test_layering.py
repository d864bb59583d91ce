"""Imports point one way: api -> projections -> ledger, api -> demo -> ledger (the demo data
set is data, not an interface); the verifier stands alone."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {
    "ledger": {"ledger"},
    "projections": {"projections", "ledger"},
    "demo": {"demo", "ledger"},
    "api": {"api", "demo", "projections", "ledger"},
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


CONSENT = "ledger.verifier.consent_rules"
SHARED_FOLDS = {
    "projections/requests.py": ("ledger.verifier.requests_fold.fold",),
    "projections/incidents.py": ("ledger.verifier.incidents_fold.fold",),
    "projections/consent_book.py": (f"{CONSENT}.decision_of",),
    "projections/consent_state.py": (f"{CONSENT}.note_of", f"{CONSENT}.intervals"),
    "projections/consent_facts.py": (f"{CONSENT}.pending_renewal", f"{CONSENT}.verdict_at"),
    "ledger/verifier/report.py": (
        "ledger.verifier.requests_fold.fold",
        "ledger.verifier.incidents_fold.fold",
        f"{CONSENT}.decision_of",
        f"{CONSENT}.note_of",
        f"{CONSENT}.timeline",
    ),
}
"""The readers of a register, and the fold each must take the register's state from: the
request and incident folds; for consent, what a fact records on a purpose (decision_of,
note_of), the validity intervals, the pending renewal and the verdict."""
STEP_RULES = {
    f"ledger.verifier.{module}.{name}"
    for module, names in (
        ("request_rules", ("contribution", "CLOSING")),
        ("incident_rules", ("contribution", "step", "STEP_SEQ", "STEP_STATUS", "FIRST_WINS")),
    )
    for name in names
}
"""What a step does to a request or an incident: only the folds apply it."""


def used_names(path: Path) -> set[str]:
    """The qualified names of ours a module uses: ``module.name`` for each name imported from
    a module and used, and for each attribute of an imported module it reads."""
    tree = ast.parse(path.read_text(), filename=str(path))
    local: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                local[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:  # import a.b as c: c is a.b
                    local[alias.asname] = alias.name
                else:  # import a.b: a is a
                    top = alias.name.split(".")[0]
                    local[top] = top
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in local:
            used.add(local[node.id])
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in local
        ):
            used.add(f"{local[node.value.id]}.{node.attr}")
    return used


def test_read_models_and_the_report_share_one_fold_per_register() -> None:
    """The request and incident registers store, and the report renders, the state of the
    same fold; none of them applies a step's rules itself (a second fold)."""
    wrong = []
    for name, folds in SHARED_FOLDS.items():
        used = {  # projections/consent_rules.py only re-exports the verifier's rules
            qualified.replace("projections.consent_rules.", f"{CONSENT}.")
            for qualified in used_names(ROOT / name)
        }
        wrong += [f"{name} does not call {fold}" for fold in folds if fold not in used]
        wrong += [f"{name} folds by itself with {rule}" for rule in sorted(used & STEP_RULES)]
    assert not wrong


ENTRYPOINTS = sorted(
    str(path.relative_to(ROOT))
    for path in [
        *(ROOT / "api" / "http" / "routes").glob("*.py"),
        *(ROOT / "api" / "http" / "console").glob("*.py"),
        ROOT / "api" / "http" / "deps.py",
        *(ROOT / "api" / "cli").glob("*.py"),
    ]
)
"""The routes, the console's pages and the commands: thin adapters over the service layer."""
SERVICE_LAYER = {
    "ledger.application",  # appends and erasures
    "ledger.operations",  # an operator's commands on the log and keys
    "projections.queries",  # every question
    "projections.operations",  # an operator's commands on the read models
}
CATALOGUE = {"ledger.events", "ledger.vocabulary", "ledger.errors"}
"""The facts, their words and the errors the service layer raises."""


def entrypoint_may_import(module: str) -> bool:
    """Ours: the service layer, the catalogue, the published formats (``ledger.verifier``,
    what a regulator runs too), and the api package itself (the composition root, the HTTP
    plumbing) and the demo data set; anything not ours."""
    top = module.split(".")[0]
    return (
        top not in ALLOWED
        or top in ("api", "demo")
        or module in SERVICE_LAYER | CATALOGUE
        or module == "ledger.verifier"
        or module.startswith("ledger.verifier.")
    )


def test_entrypoints_import_only_the_service_layer_and_the_catalogue() -> None:
    wrong = [
        f"{name} imports {module}"
        for name in ENTRYPOINTS
        for module in sorted(imported_modules(ROOT / name))
        if not entrypoint_may_import(module)
    ]
    assert not wrong


QUERY_CLIENTS = [
    *ENTRYPOINTS,
    "api/http/app.py",
    "api/http/metrics.py",
    "api/schedule.py",
    "projections/retention_job.py",
]
"""Modules that read through the service layer only: the entrypoints, the HTTP app's
wiring and metrics, and the jobs."""


def reaches_through(path: Path) -> list[str]:
    """Where a module reaches past the query layer: into the subject keys (``.subject_keys``),
    the recorder (``.ledger.`` followed by anything) or the runner's ledger (``.runner.app``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not isinstance(node, ast.Attribute):
            continue
        inner = node.value
        if node.attr == "subject_keys":
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} reads .subject_keys")
        elif isinstance(inner, ast.Attribute) and inner.attr == "ledger":
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} reads .ledger.{node.attr}")
        elif node.attr == "app" and isinstance(inner, ast.Attribute) and inner.attr == "runner":
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} reads .runner.app")
    return found


def test_entrypoints_read_through_the_query_layer() -> None:
    """Routes and CLI commands ask projections/queries.py (one answer per question, e.g. the
    pseudonym re-checked after an erasure), not the recorder or the subject keys."""
    wrong = [line for name in QUERY_CLIENTS for line in reaches_through(ROOT / name)]
    assert not wrong


def test_no_test_module_imports_another() -> None:
    """What tests share lives in tests/support/ (or a conftest.py), not in a test module that
    another test module imports (and so runs its fixtures and collects its tests twice)."""
    wrong = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in sorted((ROOT / "tests").rglob("*.py"))
        for module in imported_modules(path)
        if module.startswith("tests.") and module.rsplit(".", 1)[-1].startswith("test_")
    ]
    assert not wrong
