"""benchmarks/bench_select.py end to end on a tiny pool (its stage hooks name private
functions of cec.py / clustering.py, so a refactor there must fail here, not in a
benchmark run weeks later)."""

import json

import pytest


@pytest.fixture
def bench_select(bench_script):
    return bench_script("bench_select")


def test_cec_worker_times_every_stage_and_reuses_pools(bench_select, tmp_path):
    out, pools = tmp_path / "out", tmp_path / "pools"
    args = ["--sizes", "3000", "--methods", "cec", "--pools", "synthetic", "--no-ann", "--out", str(out),
            "--data-dir", str(pools), "--budget-frac", "0.005", "--reuse-pools"]
    bench_select.main(args)
    report = json.loads((out / "select_scaling.json").read_text())
    (run,) = report["runs"]
    assert run["status"] == "ok", run.get("error")
    assert run["b"] == 15 and report["budget_frac"] == 0.005
    for stage in ("calibration", "knn", "kmeans", "query"):
        assert run["stages_s"][stage] > 0, stage  # each hook saw its kernel run
    assert run["knn_recall20"] == 1.0 and run["knn_index"] == "exact"
    assert (pools / "x_3000.npy").exists()  # kept for the next command
    bench_select.main(args + ["--append"])
    report = json.loads((out / "select_scaling.json").read_text())
    assert [r["status"] for r in report["runs"]] == ["ok", "ok"]
    assert "| 3,000 | 15 | cec [synthetic] |" in (out / "select_scaling.md").read_text()
