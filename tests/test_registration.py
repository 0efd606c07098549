"""One registration point: ``@register("name")`` in a strategy's own module is all the
wiring a strategy needs; the name table, ``vlal.__all__``, the README table and the
template tests follow it (checked here)."""

import ast
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import vlal
from vlal.strategies import _register

TESTS = Path(__file__).parent
ROOT = TESTS.parent


def template_coverage(test_dir: Path) -> dict[str, str]:
    """``{registered name: test class}`` over the ``StrategyTemplate`` subclasses of ``test_dir``
    (read from the source, so every test file counts, whichever ones pytest collected)."""
    out = {}
    for path in sorted(test_dir.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            if not any(isinstance(b, ast.Name) and b.id == "StrategyTemplate" for b in node.bases):
                continue
            for stmt in node.body:
                if (isinstance(stmt, ast.Assign) and any(getattr(t, "id", None) == "registered" for t in stmt.targets)
                        and isinstance(stmt.value, ast.Constant)):
                    out.setdefault(stmt.value.value, f"{path.name}::{node.name}")
    return out


def test_every_registered_strategy_has_a_template_test():
    covered = template_coverage(TESTS)
    missing = sorted(set(_register.registered()) - set(covered))
    assert not missing, f"registered strategies without a StrategyTemplate subclass (registered = name): {missing}"
    unknown = sorted(set(covered) - set(_register.registered()))
    assert not unknown, f"template tests name unregistered strategies: {unknown}"


def test_registered_classes_are_exported():
    classes = {f for f, _ in _register.registered().values() if isinstance(f, type)}
    assert classes, "no strategy registered itself with @register"
    for cls in classes:
        assert cls.__name__ in vlal.__all__ and getattr(vlal, cls.__name__) is cls, cls
    strategy_names = {n for n in vlal.__all__ if isinstance(getattr(vlal, n), type)
                      and issubclass(getattr(vlal, n), vlal.Strategy)}
    # the unregistered exports are the base class and the three templates
    assert strategy_names - {c.__name__ for c in classes} <= {"Strategy", "UncertaintyStrategy", "ClusteringStrategy",
                                                              "KCenterStrategy"}


def test_readme_table_lists_every_name():
    readme = (ROOT / "README.md").read_text()
    table = "\n".join(line for line in readme.splitlines() if line.startswith("| `"))
    listed = set(re.findall(r"`([a-z0-9_\-]+)(?:\(<base>\))?`", table))
    missing = sorted(set(_register.registered()) - listed)
    assert not missing, f"README strategy table lacks {missing}"


def test_decorator_registers_and_returns_the_class():
    @vlal.register("tmp-deco")
    class Tmp(vlal.Random):
        pass

    try:
        assert Tmp.__name__ == "Tmp"
        assert type(vlal.make_strategy("tmp-deco", random_state=0)) is Tmp
        assert "tmp-deco" in vlal.available_strategies()
    finally:
        del _register.FACTORIES["tmp-deco"]


def test_function_form_still_works():
    vlal.register("tmp-fn", lambda random_state=None: vlal.Entropy(random_state=random_state))
    try:
        assert isinstance(vlal.make_strategy("tmp-fn"), vlal.Entropy)
    finally:
        del _register.FACTORIES["tmp-fn"]
    with pytest.raises(vlal.VlalInputError, match="strategy name"):
        vlal.register("bad name", vlal.Random)


TOY_MODULE = '''
import numpy as np

from vlal.strategies._register import register
from vlal.strategies.base import Strategy


@register("toy-first")
class ToyFirst(Strategy):
    """Queries the first candidates in pool order."""

    def _query(self, pool, budget, rng):
        return np.asarray(pool.candidates[:budget])
'''

TOY_TEST = '''
import numpy as np
import toy_strategy  # the one new module

import vlal
from strategy_template import StrategyTemplate


class TestToyFirst(StrategyTemplate):
    registered = "toy-first"
    make = staticmethod(lambda rs: vlal.make_strategy("toy-first", random_state=rs))


def test_toy_is_registered():
    assert "toy-first" in vlal.available_strategies()
'''


@pytest.mark.slow
def test_a_new_strategy_needs_one_module_and_one_test_file(tmp_path):
    """Adding a strategy = one module + one test file: the template suite runs on it and the
    registration check counts it, with nothing else edited."""
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "toy_strategy.py").write_text(TOY_MODULE)
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_toy.py").write_text(TOY_TEST)
    for helper in ("conftest.py", "strategy_template.py"):
        (tests / helper).write_text((TESTS / helper).read_text())
    src = Path(vlal.__file__).parents[1]
    env_path = f"{src}:{tmp_path / 'mods'}"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", str(tests)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env={**__import__("os").environ, "PYTHONPATH": env_path})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert re.search(r"\d+ passed", run.stdout)
    assert template_coverage(tests) == {"toy-first": "test_toy.py::TestToyFirst"}
    # The check itself fails for a registered name without a template test:
    (tests / "test_toy.py").write_text(TOY_TEST.replace('registered = "toy-first"', "registered = None"))
    assert "toy-first" not in template_coverage(tests)


def test_wrapper_parameters_after_the_base():
    # "pcb(<base>)" is the listed name, so its parameters may follow it like any name's
    a = vlal.make_strategy("pcb(cec[k=7])[gamma=0.2]", random_state=0)
    b = vlal.make_strategy("pcb[gamma=0.2](cec[k=7])", random_state=0)
    assert isinstance(a, vlal.PCB) and a.gamma == 0.2 and a.base_strategy.k == 7
    assert a.get_params(deep=True).keys() == b.get_params(deep=True).keys()
    assert {k: str(v) for k, v in a.get_params(deep=True).items()} == {k: str(v) for k, v in b.get_params(deep=True).items()}
    assert vlal.make_strategy("PCB(entropy) [gamma=0.5]").gamma == 0.5
    with pytest.raises(vlal.VlalInputError, match="given twice"):
        vlal.make_strategy("pcb[gamma=0.1](cec)[gamma=0.2]")
    with pytest.raises(vlal.VlalInputError, match="bad parameters in 'pcb\\(cec\\)\\[k=3\\]'"):
        vlal.make_strategy("pcb(cec)[k=3]")
    with pytest.raises(vlal.VlalInputError, match="unknown strategy"):
        vlal.make_strategy("pcb(nosuch)[gamma=0.2]")


def test_seed_in_the_strategy_name_is_used_once():
    import numpy as np

    import vlal

    s = vlal.make_strategy("cec[random_state=3]")
    assert s.random_state == 3
    assert vlal.make_strategy("pcb[random_state=5](entropy)").random_state == 5
    with pytest.raises(ValueError, match="random_state given twice"):
        vlal.make_strategy("cec[random_state=3]", random_state=4)
    # the same picks as the keyword form
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 6)).astype(np.float32)
    p = np.full((80, 3), 1 / 3, dtype=np.float32)
    a = vlal.make_strategy("random[random_state=3]").select(x, p, 5)
    b = vlal.make_strategy("random", random_state=3).select(x, p, 5)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("params, word", [("mix='abc'", "mix"), ("mix=True", "mix"), ("alpha='0.1'", "alpha"),
                                          ("mix=1.5", "mix"), ("mix=None,half_shots=0", "half_shots")])
def test_calibrated_mix_parameter_errors_name_the_parameter(params, word):
    import vlal

    with pytest.raises(ValueError, match=word):
        vlal.make_strategy(f"calibrated-mix[{params}]")
