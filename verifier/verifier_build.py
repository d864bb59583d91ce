"""The build backend of ``consent-ledger-verifier`` (PEP 517), standard library only.

The wheel holds ``ledger/__init__.py``, ``ledger/py.typed`` and ``ledger/verifier/`` (its
``.py`` files and ``py.typed``), taken from the repository's own ``ledger/`` beside this folder,
so the verifier has one copy of its code; the sdist carries those files inside it, and a build
from an unpacked sdist reads them there. The metadata comes from the ``[project]`` table of
``pyproject.toml`` next to this file. Nothing is fetched, nothing is compiled; the archives are
reproducible (fixed times and modes, sorted entries; ``SOURCE_DATE_EPOCH`` is honoured).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import os
import re
import tarfile
import time
import tomllib
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PACKAGE = "ledger"
SUBPACKAGE = "verifier"
SHIPPED_SUFFIXES = (".py", ".typed")


class BuildError(Exception):
    """The project cannot be built as it stands (names the file or the field)."""


@dataclass(frozen=True)
class Project:
    """What the ``[project]`` table says, and where the shipped files come from."""

    name: str
    version: str
    summary: str
    readme: str
    requires_python: str
    license: str
    dependencies: tuple[str, ...]
    scripts: tuple[tuple[str, str], ...]
    source_root: Path
    license_file: Path

    @property
    def dist_name(self) -> str:
        """The name as wheel and sdist file names spell it (PEP 427, PEP 625)."""
        return re.sub(r"[-_.]+", "_", self.name).lower()

    @property
    def dist_info(self) -> str:
        return f"{self.dist_name}-{self.version}.dist-info"


def _field(table: Mapping[str, Any], key: str, kind: type) -> Any:
    value = table.get(key)
    if not isinstance(value, kind):
        raise BuildError(f"pyproject.toml: [project] {key} must be a {kind.__name__}")
    return value


def _source_root() -> Path:
    """``ledger/`` next to this file (an unpacked sdist), else the repository's (a checkout)."""
    for root in (HERE, HERE.parent):
        if (root / PACKAGE / SUBPACKAGE / "__init__.py").is_file():
            return root
    raise BuildError(f"no {PACKAGE}/{SUBPACKAGE}/ beside {HERE} nor in {HERE.parent}")


def _license_file() -> Path:
    for root in (HERE, HERE.parent):
        if (root / "LICENSE").is_file():
            return root / "LICENSE"
    raise BuildError(f"no LICENSE beside {HERE} nor in {HERE.parent}")


def read_project() -> Project:
    """The ``[project]`` table of ``pyproject.toml``, checked for the fields this backend uses."""
    with (HERE / "pyproject.toml").open("rb") as file:
        table = tomllib.load(file).get("project", {})
    if table.get("dynamic"):
        raise BuildError("pyproject.toml: [project] dynamic is not supported by this backend")
    dependencies = _field(table, "dependencies", list)
    scripts = table.get("scripts", {})
    if not all(isinstance(d, str) for d in dependencies) or not isinstance(scripts, dict):
        raise BuildError("pyproject.toml: [project] dependencies must be strings, scripts a table")
    readme = HERE / _field(table, "readme", str)
    return Project(
        name=_field(table, "name", str),
        version=_field(table, "version", str),
        summary=_field(table, "description", str),
        readme=readme.read_text(encoding="utf-8"),
        requires_python=_field(table, "requires-python", str),
        license=_field(table, "license", str),
        dependencies=tuple(dependencies),
        scripts=tuple(sorted((str(k), str(v)) for k, v in scripts.items())),
        source_root=_source_root(),
        license_file=_license_file(),
    )


def shipped_files(project: Project) -> list[str]:
    """The package's files, relative to the source root, in '/' form, sorted."""
    root = project.source_root
    files = [f"{PACKAGE}/__init__.py"]
    if (root / PACKAGE / "py.typed").is_file():
        files.append(f"{PACKAGE}/py.typed")
    for path in sorted((root / PACKAGE / SUBPACKAGE).rglob("*")):
        if path.is_file() and path.suffix in SHIPPED_SUFFIXES and "__pycache__" not in path.parts:
            files.append(path.relative_to(root).as_posix())
    return sorted(files)


def metadata(project: Project) -> str:
    """Core metadata 2.1 (PKG-INFO and METADATA), readable by any pip that reads wheels."""
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {project.name}",
        f"Version: {project.version}",
        f"Summary: {project.summary}",
        f"License: {project.license}",
        f"Requires-Python: {project.requires_python}",
        *(f"Requires-Dist: {dependency}" for dependency in project.dependencies),
        "Description-Content-Type: text/markdown",
    ]
    return "\n".join(lines) + "\n\n" + project.readme


def _dist_info_files(project: Project) -> dict[str, bytes]:
    files = {
        "METADATA": metadata(project).encode(),
        "WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: verifier_build\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
        "LICENSE": project.license_file.read_bytes(),
    }
    if project.scripts:
        entries = "".join(f"{name} = {target}\n" for name, target in project.scripts)
        files["entry_points.txt"] = f"[console_scripts]\n{entries}".encode()
    return files


def _epoch() -> int:
    """``SOURCE_DATE_EPOCH`` if set, else 1980-01-01 (the earliest time a zip can hold)."""
    floor = 315532800
    return max(int(os.environ.get("SOURCE_DATE_EPOCH", floor)), floor)


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def _wheel_entries(project: Project) -> Iterator[tuple[str, bytes]]:
    for name in shipped_files(project):
        yield name, (project.source_root / name).read_bytes()
    for name, data in sorted(_dist_info_files(project).items()):
        yield f"{project.dist_info}/{name}", data


# -- the PEP 517 hooks ---------------------------------------------------------------------------


def get_requires_for_build_wheel(config_settings: Mapping[str, Any] | None = None) -> list[str]:
    return []


def get_requires_for_build_sdist(config_settings: Mapping[str, Any] | None = None) -> list[str]:
    return []


def prepare_metadata_for_build_wheel(
    metadata_directory: str, config_settings: Mapping[str, Any] | None = None
) -> str:
    project = read_project()
    target = Path(metadata_directory) / project.dist_info
    target.mkdir(parents=True, exist_ok=True)
    for name, data in _dist_info_files(project).items():
        (target / name).write_bytes(data)
    return project.dist_info


def build_wheel(
    wheel_directory: str,
    config_settings: Mapping[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    project = read_project()
    filename = f"{project.dist_name}-{project.version}-py3-none-any.whl"
    stamp = time.gmtime(_epoch())[:6]
    record: list[str] = []
    with zipfile.ZipFile(Path(wheel_directory) / filename, "w", zipfile.ZIP_DEFLATED) as wheel:

        def add(name: str, data: bytes) -> None:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            wheel.writestr(info, data)

        for name, data in _wheel_entries(project):
            add(name, data)
            record.append(_record_line(name, data))
        record.append(f"{project.dist_info}/RECORD,,")
        add(f"{project.dist_info}/RECORD", ("\n".join(record) + "\n").encode())
    return filename


def build_sdist(sdist_directory: str, config_settings: Mapping[str, Any] | None = None) -> str:
    project = read_project()
    base = f"{project.dist_name}-{project.version}"
    members: dict[str, bytes] = {
        "PKG-INFO": metadata(project).encode(),
        "LICENSE": project.license_file.read_bytes(),
    }
    for name in ("pyproject.toml", "README.md", Path(__file__).name):
        members[name] = (HERE / name).read_bytes()
    for name in shipped_files(project):
        members[name] = (project.source_root / name).read_bytes()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(members.items()):
            info = tarfile.TarInfo(f"{base}/{name}")
            info.size, info.mtime, info.mode = len(data), _epoch(), 0o644
            tar.addfile(info, io.BytesIO(data))
    filename = f"{base}.tar.gz"
    with (
        (Path(sdist_directory) / filename).open("wb") as out,
        gzip.GzipFile(filename=f"{base}.tar", fileobj=out, mode="wb", mtime=_epoch()) as gz,
    ):
        gz.write(raw.getvalue())
    return filename
