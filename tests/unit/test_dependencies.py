"""The dependencies (issue 13, item 23): what the code imports is what pyproject.toml
requires, and a fresh clone installs the versions the tests passed with (constraints.txt,
which the Makefile hands to every pip install)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _required() -> set[str]:
    return {_norm(Requirement(r).name) for r in PROJECT["dependencies"]}


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"constraints.txt: not an exact pin: {line!r}"
            pins[_norm(name)] = version
    return pins


def _imported_distributions() -> set[str]:
    """The distributions whose modules src/waypost imports (outside the standard library)."""
    top: set[str] = set()
    for path in (ROOT / "src" / "waypost").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                top.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                top.add(node.module.split(".")[0])
    top -= set(sys.stdlib_module_names) | {"waypost", "__future__"}
    owners = metadata.packages_distributions()
    missing = sorted(t for t in top if t not in owners)
    assert not missing, f"imported but not installed: {missing}"
    return {_norm(d) for t in top for d in owners[t]}


#: Required but imported by another dependency, not by our code: Starlette imports
#: python-multipart when a handler reads a form (login, compose, uploads).
IMPORTED_BY_A_DEPENDENCY = {"python-multipart"}


def test_every_required_dependency_is_imported_and_every_import_is_required():
    imported = _imported_distributions() | IMPORTED_BY_A_DEPENDENCY
    assert sorted(_required() - imported) == [], "required but never imported: move to an extra"
    assert sorted(imported - _required()) == [], "imported but not in [project].dependencies"


def test_constraints_pin_every_dependency_at_the_installed_version():
    pins = _pins()
    wanted = _required() | {_norm(Requirement(r).name) for extra in PROJECT["optional-dependencies"].values()
                            for r in extra}
    assert sorted(wanted - set(pins)) == [], "constraints.txt lacks these"
    assert "waypost" not in pins
    for name, version in pins.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # an extra this environment did not install
        assert installed == version, f"{name}: constraints.txt says {version}, the tests run with {installed}"


def test_the_makefile_installs_with_the_constraints():
    makefile = (ROOT / "Makefile").read_text()
    installs = [line for line in makefile.splitlines() if re.search(r"\$\(PIP\) install .*-e ", line)]
    assert installs, "no pip install of the project in the Makefile"
    for line in installs:
        assert "-c $(CONSTRAINTS)" in line, line
    assert re.search(r"^CONSTRAINTS\s*:?=\s*constraints\.txt$", makefile, re.M)
