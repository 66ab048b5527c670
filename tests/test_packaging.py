"""Every third-party module a package imports is declared in pyproject.toml.

A module that arrives only as another package's dependency (scipy and threadpoolctl come
with scikit-learn) works until that package drops it; pip then installs an `rln` whose
import fails. Each import package of the project may import: the standard library, the
project's own packages, the core dependencies, and its extra (rln_torch: torch, ...).
"""

from __future__ import annotations

import ast
import importlib.metadata
import sys
import tomllib
from pathlib import Path
from typing import Dict, Set

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PACKAGE_DIRS = PYPROJECT["tool"]["setuptools"]["package-dir"]
OWN = set(PACKAGE_DIRS)
EXTRA_OF = {"rln_core": None, "rln_torch": "torch", "rln_keras": "keras", "rln_jax": "jax",
            "rln_sklearn": "sklearn"}
# Imported on request only, and declared in the extra that request needs:
# RLNRegressor(backend="keras") imports keras (the keras extra); rln_keras imports jax or
# torch only under that Keras backend (which needs it installed).
OPTIONAL = {"rln_sklearn": {"keras": "keras"}, "rln_keras": {"jax": "jax", "torch": "torch"}}


def _declared(extra: str | None) -> Set[str]:
    """Canonical distribution names of the core dependencies plus `extra`'s."""
    project = PYPROJECT["project"]
    requirements = [Requirement(text) for text in project["dependencies"]]
    if extra is not None:
        requirements += [Requirement(text) for text in project["optional-dependencies"][extra]]
    return {canonicalize_name(requirement.name) for requirement in requirements}


def _imported(package: str) -> Set[str]:
    """Top-level names of every module the package's files import, anywhere in them."""
    names = set()
    for path in (REPO / PACKAGE_DIRS[package]).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def _distributions(module: str, table: Dict[str, list]) -> Set[str]:
    return {canonicalize_name(name) for name in table.get(module, [])}


@pytest.mark.parametrize("package", sorted(EXTRA_OF))
def test_every_third_party_import_is_declared(package):
    table = importlib.metadata.packages_distributions()
    declared = _declared(EXTRA_OF[package])
    third_party = _imported(package) - set(sys.stdlib_module_names) - OWN
    undeclared = {}
    for module in sorted(third_party):
        extra = OPTIONAL.get(package, {}).get(module)
        allowed = declared | (_declared(extra) if extra else set())
        found = _distributions(module, table)
        if not found & allowed:
            undeclared[module] = sorted(found) or "not installed"
    assert not undeclared, f"{package} imports modules its requirements do not declare: {undeclared}"


def test_the_check_sees_an_undeclared_import():
    """scipy arrives with scikit-learn but rln_sklearn imports it: it must be declared."""
    table = importlib.metadata.packages_distributions()
    assert "scipy" in _imported("rln_sklearn")
    assert _distributions("scipy", table) & _declared("sklearn")
    assert not _distributions("scipy", table) & _declared(None)


def test_the_rln_command_names_the_sklearn_extra_for_each_of_its_modules():
    """`rln` without the sklearn extra says what to install when one of the extra's modules
    is missing (rln_sklearn._command.EXTRA_MODULES): that set must be the extra's."""
    from rln_sklearn._command import EXTRA_MODULES

    table = importlib.metadata.packages_distributions()
    named = set().union(*(_distributions(module, table) for module in EXTRA_MODULES))
    assert named == _declared("sklearn") - _declared(None)
