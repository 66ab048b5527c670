"""`Hyperparameters`: the three numbers of RLN, validated once, in one place."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional, TypedDict

import numpy as np

NORMS = (1, 2)


class Keywords(TypedDict):
    """`Hyperparameters.asdict()`: the keywords of `rln_core.update` (typed, so that
    `update(W, state, **hyperparameters.asdict())` type-checks)."""

    avg_reg: float
    learning_rate: float
    norm: int


def _is_real(value: object) -> bool:
    """A real scalar: a Python or NumPy int or float (not a bool, a complex or an array)."""
    return isinstance(value, (int, float, np.integer, np.floating)) \
        and not isinstance(value, (bool, np.bool_))


def _finite_float(value: object) -> Optional[float]:
    """`value` as a finite Python float, or None (not a real scalar, NaN, inf, or an int
    beyond float's range such as 10**400)."""
    if not _is_real(value):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _array_hint(value: object) -> str:
    """What an error adds where `value` is an array (even a 0-d one, or a traced value):
    the hyperparameters are fixed numbers (`optax.inject_hyperparams` cannot make them
    arrays); nothing for any other value."""
    if _is_real(value) or not (hasattr(value, "shape") or hasattr(value, "__array__")):
        return ""
    return (f" (got an array, {type(value).__name__}: the hyperparameters are fixed Python "
            "or NumPy numbers, not arrays)")


@dataclasses.dataclass(frozen=True)
class Hyperparameters:
    """RLN's hyperparameters (docs/RLN_SPEC.md), checked when constructed.

    The original callback's names are kept, so the authors' tutorial reads the same.

    Attributes:
        avg_reg: Theta, the mean the lambdas are translated back to after each
            lambda step (natural log of a coefficient; the tutorial's best is -10).
        learning_rate: nu, the step size of the lambdas (>= 0; large, 1e5..1e7,
            as the lambdas live in log space and the weight changes are small).
        norm: 1 (L1, the coefficient multiplies sign(w)) or 2 (L2, it multiplies 2w).

    Values are stored as Python float/int (so a checkpoint of `asdict()` loads
    with `torch.load(weights_only=True)` whatever scalar type was passed).

    Raises:
        ValueError: naming the field, for a value out of range, NaN, inf, an int
            beyond float's range, or a non-number (a bool, a complex number or an
            array is not one here).
    """

    avg_reg: float = -10.0
    learning_rate: float = 1e6
    norm: int = 1

    def __post_init__(self) -> None:
        avg_reg = _finite_float(self.avg_reg)
        if avg_reg is None:
            raise ValueError(f"Invalid avg_reg (Theta): {self.avg_reg!r}; expected a finite "
                             f"number{_array_hint(self.avg_reg)}")
        learning_rate = _finite_float(self.learning_rate)
        if learning_rate is None or learning_rate < 0.0:
            raise ValueError(f"Invalid learning_rate (nu): {self.learning_rate!r}; expected a "
                             f"finite number >= 0{_array_hint(self.learning_rate)}")
        if not _is_real(self.norm) or self.norm not in NORMS:
            raise ValueError(f"Invalid norm: {self.norm!r}; expected 1 or 2"
                             f"{_array_hint(self.norm)}")
        object.__setattr__(self, "avg_reg", avg_reg)
        object.__setattr__(self, "learning_rate", learning_rate)
        object.__setattr__(self, "norm", int(self.norm))

    def asdict(self) -> Keywords:
        """{"avg_reg": float, "learning_rate": float, "norm": int}: the keywords of
        `rln_core.update`, a `get_config` or a `state_dict` entry."""
        return {"avg_reg": self.avg_reg, "learning_rate": self.learning_rate, "norm": self.norm}

    @classmethod
    def check(cls, value: Any) -> "Hyperparameters":
        """`value` itself if it is a Hyperparameters (validated when made); TypeError else."""
        if not isinstance(value, cls):
            raise TypeError(f"hyperparameters must be an rln_core.Hyperparameters, got "
                            f"{type(value).__name__}")
        return value

    @classmethod
    def fields(cls) -> tuple:
        """The field names, in order: ("avg_reg", "learning_rate", "norm")."""
        return tuple(field.name for field in dataclasses.fields(cls))


DEFAULTS = Hyperparameters()
"""The project's defaults: the authors' tutorial's best setting (Theta -10, nu 1e6, L1)."""

ORIGINAL_CALLBACK_DEFAULTS = Hyperparameters(avg_reg=-7.5, learning_rate=6e5, norm=1)
"""The defaults of the authors' Keras callback, kept by the drop-in `rln_keras.RLNCallback`."""


class WithHyperparameters:
    """Read-only `avg_reg`, `learning_rate` and `norm` of an object's `hyperparameters`
    (a `Hyperparameters`): for the classes of the core and the adapters, which are
    built with these three arguments and keep them in one validated record."""

    hyperparameters: Hyperparameters

    @property
    def avg_reg(self) -> float:
        """Theta, the mean of the lambdas (natural log)."""
        return self.hyperparameters.avg_reg

    @property
    def learning_rate(self) -> float:
        """nu, the step size of the lambdas."""
        return self.hyperparameters.learning_rate

    @property
    def norm(self) -> int:
        """1 (L1) or 2 (L2)."""
        return self.hyperparameters.norm
