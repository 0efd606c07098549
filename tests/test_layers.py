"""Import rules of the faiss layer: each module of ``vlal._faiss`` imports only modules
listed before it in ``ORDER`` (the facade ``index`` last; ``__init__`` re-exports)."""

import ast
from pathlib import Path

import vlal._faiss

PKG = Path(vlal._faiss.__file__).parent
ORDER = ["config", "device", "exact", "lloyd", "ivf", "fast_kmeans", "index"]


def _local_imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.add(node.module.split(".")[0])
            else:
                out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 2 and node.module == "_warnings":
            out.add(".._warnings")  # the stdlib-only warning helper, below every layer
        elif isinstance(node, ast.ImportFrom) and node.level > 1:
            out.add("..")  # anything else above the package
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vlal"):
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("vlal"))
    return out


def test_every_module_is_ranked():
    mods = {p.stem for p in PKG.glob("*.py")} - {"__init__"}
    assert mods == set(ORDER), f"rank the new modules in ORDER: {sorted(mods ^ set(ORDER))}"


def test_modules_import_only_lower_ones():
    for rank, name in enumerate(ORDER):
        allowed = set(ORDER[:rank]) | {".._warnings"}
        bad = _local_imports(PKG / f"{name}.py") - allowed
        assert not bad, f"vlal._faiss.{name} imports {sorted(bad)}, which is not below it in {ORDER}"


def test_rule_checker_sees_an_upward_import(tmp_path):
    f = tmp_path / "exact.py"
    f.write_text("from .index import KnnIndex\nfrom . import ivf\nfrom .. import scoring\n"
                 "from .._warnings import warn_caller\nfrom ..scoring import entropy\n")
    assert _local_imports(f) == {"index", "ivf", "..", ".._warnings"}


def test_no_thread_toggling_or_counters_in_the_layer():
    text = "".join(p.read_text() for p in PKG.glob("*.py"))
    assert "omp_set_num_threads" not in text  # limits go through threadpoolctl
    assert "threading" not in text  # no process-global counters or locks


# ---------------------------------------------------------------------------- the package's layers

SRC = PKG.parent
#: CONTRIBUTING.md, "Import rules of the layers": a module may import its own layer and those below.
LAYERS = {"exceptions": 0, "_io": 0, "_warnings": 0, "_validation": 1, "_faiss": 1, "shards": 1,
          "scoring": 2, "alignment": 2, "strategies": 3, "_scale": 3, "registry": 4, "tuners": 4, "data": 4,
          "loop": 4, "bench": 5, "session": 5, "session_cli": 5, "integrations": 5, "clip": 5, "cli": 5,
          "__main__": 5}


def _top(path: Path) -> str:
    first = path.relative_to(SRC).parts[0]
    return first[:-3] if first.endswith(".py") else first


def _vlal_imports(path: Path) -> set[str]:
    """Top-level vlal modules ``path`` imports (function-level imports included); a name imported
    from the package root itself (``from .. import X``) counts as ``__init__``."""
    rel = path.relative_to(SRC).parts
    depth = len(rel) - 1
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                mod = node.module or ""
                if mod.startswith("vlal."):
                    out.add(mod.split(".")[1])
                elif mod == "vlal":
                    out.add("__init__")
                continue
            if node.level - 1 > depth:
                continue
            parts = list(rel[: depth - (node.level - 1)]) + (node.module.split(".") if node.module else [])
            if parts:
                out.add(parts[0][:-3] if parts[0].endswith(".py") else parts[0])
            else:  # ``from . import x`` in the package root: a submodule, or a name of __init__
                out.update(a.name if a.name in LAYERS else "__init__" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[1] for a in node.names if a.name.startswith("vlal."))
    return out


def test_every_package_module_is_ranked():
    mods = {_top(p) for p in SRC.rglob("*.py")} - {"__init__"}
    assert mods == set(LAYERS), f"rank the new modules in LAYERS (and CONTRIBUTING.md): {sorted(mods ^ set(LAYERS))}"


def test_package_modules_import_only_their_layer_and_below():
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        own = _top(path)
        if own == "__init__":
            continue  # the package root re-exports
        for mod in _vlal_imports(path):
            if mod == "__init__" or LAYERS[mod] > LAYERS[own]:
                bad.append(f"{path.relative_to(SRC)} imports {mod}")
    assert not bad, "upward imports (import from the defining module, never the package root): " + "; ".join(bad)


def test_package_rule_checker_sees_upward_and_root_imports(tmp_path):
    pkg = tmp_path / "vlal"
    (pkg / "strategies").mkdir(parents=True)
    f = pkg / "strategies" / "x.py"
    f.write_text("from .. import CEC\nfrom ..bench import run_benchmark\nfrom .base import Strategy\n"
                 "from ..scoring import entropy\nimport vlal.clip\nfrom .. import _scale\n")
    global SRC
    old, SRC = SRC, pkg
    try:
        assert _vlal_imports(f) == {"__init__", "bench", "strategies", "scoring", "clip", "_scale"}
    finally:
        SRC = old
