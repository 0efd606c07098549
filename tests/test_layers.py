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
