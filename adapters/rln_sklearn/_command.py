"""The `rln` console script's entry point: `rln_sklearn.cli.main`, or a one-line error
naming the extra to install where its dependencies are missing (a plain `pip install
rln` has numpy and numba only)."""

from __future__ import annotations

import sys
from typing import Optional, Sequence

# the sklearn extra's distributions, as imported (tests/test_packaging.py keeps them equal)
EXTRA_MODULES = frozenset({"sklearn", "scipy", "joblib", "threadpoolctl", "torch", "tqdm",
                           "matplotlib", "pandas"})


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run `rln_sklearn.cli.main`; exit status 1, saying what to install, without its
    dependencies."""
    try:
        from rln_sklearn.cli import main as cli_main
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] not in EXTRA_MODULES:
            raise  # not a missing extra: a broken install
        print(f"rln: the rln command needs the sklearn extra (missing: {error.name}); "
              "install it with: pip install 'rln[sklearn]'", file=sys.stderr)
        return 1
    return cli_main(argv)
