"""Every third-party module a package imports is declared in pyproject.toml.

A module that arrives only as another package's dependency (scipy and threadpoolctl come
with scikit-learn) works until that package drops it; pip then installs an `rln` whose
import fails. Each import package of the project may import: the standard library, the
project's own packages, the core dependencies, and its extra (rln_torch: torch, ...).
"""

from __future__ import annotations

import ast
import re
import importlib.metadata
import sys
from pathlib import Path
from typing import Dict, List, Optional, Set

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the test extra installs tomli
    import tomli as tomllib

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


def _declared(extra: Optional[str]) -> Set[str]:
    """Canonical distribution names of the core dependencies plus `extra`'s."""
    project = PYPROJECT["project"]
    requirements = [Requirement(text) for text in project["dependencies"]]
    if extra is not None:
        requirements += [Requirement(text) for text in project["optional-dependencies"][extra]]
    return {canonicalize_name(requirement.name) for requirement in requirements}


def _imports(path: Path) -> Set[str]:
    """Top-level names of every module a file imports, anywhere in it."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _imported(package: str) -> Set[str]:
    """Top-level names of every module the package's files import, anywhere in them."""
    return set().union(*map(_imports, (REPO / PACKAGE_DIRS[package]).rglob("*.py")))


def _distributions(module: str, table: Dict[str, List[str]]) -> Set[str]:
    """Canonical names of the installed distributions that provide `module`."""
    return {canonicalize_name(name) for name in table.get(module, [])}


def undeclared(package: str, declared: Set[str], optional: Dict[str, Set[str]],
               table: Dict[str, List[str]]) -> Dict[str, List[str]]:
    """The package's third-party imports no declared distribution provides: {module: the
    distributions that do}. `optional`: module -> what else declares it (an import made
    on request only). A module that is not installed is left out: an optional one is
    then simply absent, and a required one fails the package's own tests."""
    third_party = _imported(package) - set(sys.stdlib_module_names) - OWN
    found = {module: _distributions(module, table) for module in sorted(third_party)}
    return {module: sorted(names) for module, names in found.items()
            if names and not names & (declared | optional.get(module, set()))}


def _optional(package: str) -> Dict[str, Set[str]]:
    return {module: _declared(extra) for module, extra in OPTIONAL.get(package, {}).items()}


@pytest.mark.parametrize("package", sorted(EXTRA_OF))
def test_every_third_party_import_is_declared(package):
    found = undeclared(package, _declared(EXTRA_OF[package]), _optional(package),
                       importlib.metadata.packages_distributions())
    assert not found, f"{package} imports modules its requirements do not declare: {found}"


def test_the_check_finds_an_import_left_undeclared():
    """rln_sklearn imports scipy directly: with scipy taken out of its requirements the
    check names it (and nothing the extra still declares)."""
    table = importlib.metadata.packages_distributions()
    without_scipy = _declared("sklearn") - {"scipy"}
    assert undeclared("rln_sklearn", without_scipy, _optional("rln_sklearn"), table) == {
        "scipy": ["scipy"]}


def test_the_rln_command_names_the_sklearn_extra_for_each_of_its_modules():
    """`rln` without the sklearn extra says what to install when one of the extra's modules
    is missing (rln_sklearn._command.EXTRA_MODULES): each is provided by a distribution of
    the extra, and each distribution of the extra provides one of them."""
    from rln_sklearn._command import EXTRA_MODULES

    table = importlib.metadata.packages_distributions()
    extra = _declared("sklearn") - _declared(None)
    provided = {module: _distributions(module, table) & extra for module in EXTRA_MODULES}
    assert all(provided.values()), provided
    assert set().union(*provided.values()) == extra


# `pip install ... ".[extra,...]"` (or '...'), as the README, the examples and the
# benches tell users to run it
INSTALL_LINE = re.compile(r"""pip install [^"'\n]*?["']\.\[([\w,\s-]+)\]["']""")
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "examples").glob("*.py")),
             *sorted((REPO / "bench").glob("*.py"))]


def test_every_extra_an_install_command_names_exists():
    extras = set(PYPROJECT["project"]["optional-dependencies"])
    named = {(path.name, extra.strip()) for path in DOCUMENTS
             for match in INSTALL_LINE.finditer(path.read_text())
             for extra in match.group(1).split(",")}
    assert {"sklearn", "dask", "keras", "all", "test"} <= {extra for _, extra in named}
    assert [(name, extra) for name, extra in sorted(named) if extra not in extras] == []


def test_each_example_names_the_extras_of_what_it_imports():
    """An example's one install line gives the extras of everything it imports: the
    project's packages (rln_keras: keras) and the third-party ones, declared by the core
    or a named extra (a requirement's own extras count: dask[distributed] gives
    distributed). The Keras tutorial imported scikit-learn while its line named only keras."""
    table = importlib.metadata.packages_distributions()
    for path in sorted((REPO / "examples").glob("*.py")):
        lines = INSTALL_LINE.findall(path.read_text())
        assert len(lines) == 1, (path.name, lines)
        named = {extra.strip() for extra in lines[0].split(",")}
        project = PYPROJECT["project"]
        requirements = [Requirement(text) for extra in named
                        for text in project["optional-dependencies"][extra]]
        declared = _declared(None) | {canonicalize_name(name) for requirement in requirements
                                      for name in {requirement.name, *requirement.extras}}
        imported = _imports(path)
        assert {EXTRA_OF[package] for package in imported & OWN} - {None} <= named, path.name
        third_party = imported - set(sys.stdlib_module_names) - OWN
        assert third_party, path.name
        missing = {module: sorted(found) for module in sorted(third_party)
                   if (found := _distributions(module, table)) and not found & declared}
        assert missing == {}, path.name
