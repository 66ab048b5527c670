"""rln_core ships its type hints (`py.typed`, PEP 561), so a user's type checker reads
them: the core's public calls, as README.md shows them, must type-check.

`Hyperparameters.asdict()` returned `Dict[str, Union[float, int]]`, and mypy refused
README's own `rln_core.update(W, state, **hp.asdict())` (an int or a float for every
keyword). The adapters ship no `py.typed`: some of their results are a tensor or a list
of tensors by how the object was made (`rln_torch.RLN.lambdas`), which a checker cannot
tell apart.
"""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

MORE_CALLS = '''
from rln_core import fused, testing

prepared = rln_core.PreparedUpdate(W, state, impl="numba", compute_dtype=None)
prepared(hp)
state32 = rln_core.init(W, state_dtype=np.float32)
rln_core.update(W, state32, compute_dtype=np.float32, **rln_core.DEFAULTS.asdict())
restored = rln_core.RLNState.from_dict(state.to_dict())
steps: int = int(restored.steps)
runner = fused.FusedStep(W, state)
runner.rmsprop(np.full_like(W, 1e-3), hp, square_avg=np.zeros_like(W), lr=1e-3)
rln = rln_core.RLN(hp.avg_reg, hp.learning_rate, hp.norm)
rln.begin(W)
rln.update(W)
checked: int = testing.check_update(rln_core.reference.update, testing.CASES[:2])
'''


def _readme_core_example() -> str:
    """The first Python block after README's "The core API" heading."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## The core API"):]
    return re.search(r"```python\n(.*?)```", section, flags=re.DOTALL).group(1)


def test_the_typed_keywords_are_the_hyperparameters():
    from rln_core.hyperparameters import Hyperparameters, Keywords

    assert tuple(Keywords.__annotations__) == Hyperparameters.fields()


def test_the_core_ships_its_hints():
    assert (REPO / "rln_core" / "py.typed").is_file()
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^rln_core = \["py.typed"\]$', pyproject, flags=re.MULTILINE)


def test_the_readmes_core_example_type_checks(tmp_path):
    user = tmp_path / "user.py"
    user.write_text(_readme_core_example() + MORE_CALLS)
    # the calls checked against the core's hints, the core's own modules not reported on;
    # rln_core read as source through MYPYPATH (the editable install's import hook is out
    # of mypy's reach), so py.typed is checked by the test above; no config file read
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file=", "--follow-imports=silent",
         "--no-incremental", "--cache-dir", str(tmp_path / "cache"), str(user)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={"MYPYPATH": str(REPO), "PATH": ""})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success: no issues found" in done.stdout
