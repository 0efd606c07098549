"""vlal.session: init / next / import / status, validation of imports, lock, recovery, CLI."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from session_helpers import choice, ls_export, make_pool_file, write_csv_labels
from vlal.cli import main
from vlal.session import (
    ImportRejectedError,
    SessionError,
    SessionLockedError,
    init_session,
    labelstudio_config,
    open_session,
)

NAMES = [f"class {i}" for i in range(5)]


@pytest.fixture
def pool_file(tmp_path):
    return make_pool_file(tmp_path / "pool.npz")


@pytest.fixture
def session(tmp_path, pool_file):
    return init_session(tmp_path / "s", pool_file[0], strategy="cec", seed=3)


def test_init_writes_config_pool_state(session, pool_file):
    cfg = json.loads((session / "session.json").read_text())
    assert cfg["class_names"] == NAMES and cfg["strategy"] == "cec" and cfg["seed"] == 3
    assert cfg["heldout"]["n"] == 100
    with open_session(session) as s:
        st = s.status()
        assert st["n_pool"] == 300 and st["n_labeled"] == 0 and st["waiting"] is None
        assert st["never_labeled"] == NAMES
        assert 0 <= st["rounds"][0]["heldout_accuracy"] <= 100  # percent
        assert s.pool["pool_features"].shape == (300, 16)
    assert "<Choice value=\"class 4\"/>" in (session / "labelstudio.xml").read_text()


def test_init_refuses_bad_inputs(tmp_path, pool_file):
    src = pool_file[0]
    init_session(tmp_path / "a", src)
    with pytest.raises(SessionError, match="already exists"):
        init_session(tmp_path / "a", src)
    with pytest.raises(SessionError, match="unknown strategy"):
        init_session(tmp_path / "b", src, strategy="nope")
    with pytest.raises(SessionError, match="unknown tuner"):
        init_session(tmp_path / "c", src, tuner="coop9")
    with pytest.raises(SessionError, match="3 class names for 5"):
        init_session(tmp_path / "d", src, class_names=["a", "b", "c"])
    z = dict(np.load(src))
    del z["text_features"]
    np.savez(tmp_path / "nt.npz", **z)
    with pytest.raises(SessionError, match="text_features"):
        init_session(tmp_path / "e", tmp_path / "nt.npz")
    assert not (tmp_path / "b").exists() and not (tmp_path / "e").exists()


def test_labelstudio_config_escapes_names():
    xml = labelstudio_config(['a "quoted" <b>', "plain"])
    assert "&lt;b&gt;" in xml and "&quot;" in xml or "'a \"quoted\" &lt;b&gt;'" in xml
    assert '<Choices name="label" toName="image"' in xml and '<Image name="image" value="$image"' in xml


def test_next_writes_csv_and_labelstudio_tasks(session):
    with open_session(session) as s:
        b = s.next(12)
        probs = s.model().predict_proba(s.pool["pool_features"])
    assert len(b["indices"]) == len(set(b["indices"])) == 12
    rows = list(csv.DictReader(open(session / b["files"]["csv"])))
    tasks = json.loads((session / b["files"]["labelstudio"]).read_text())
    assert [int(r["pool_index"]) for r in rows] == b["indices"] == [t["data"]["vlal_index"] for t in tasks]
    for r, t in zip(rows, tasks):
        i = int(r["pool_index"])
        top = NAMES[int(np.argmax(probs[i]))]
        assert r["guess_1"] == top and r["label"] == ""
        assert abs(float(r["score_1"]) - probs[i].max()) < 1e-4
        pred = t["predictions"][0]
        assert pred["result"][0]["value"]["choices"] == [top] and pred["result"][0]["from_name"] == "label"
        assert t["data"]["image"].startswith("/data/local-files/?d=") and t["data"]["image"].endswith(f"=img/{i:04d}.png")
    with open_session(session) as s:
        with pytest.raises(SessionError, match="waiting for labels"):
            s.next(5)


def test_same_seed_same_batch_and_url_prefix(tmp_path, pool_file):
    a = init_session(tmp_path / "a", pool_file[0], seed=7)
    b = init_session(tmp_path / "b", pool_file[0], seed=7)
    with open_session(a) as s:
        ia = s.next(10, url_prefix="http://host/imgs/")
    with open_session(b) as s:
        ib = s.next(10)
    assert ia["indices"] == ib["indices"]
    assert all(u.startswith("http://host/imgs/") for u in ia["urls"])


def test_import_csv_refits_and_records_round(session, pool_file, tmp_path):
    _, y = pool_file
    with open_session(session) as s:
        b = s.next(10)
    f = write_csv_labels(session, tmp_path / "l.csv", y, NAMES)
    with open_session(session) as s:
        rec = s.import_labels(f)
        st = s.status()
        w = s.model().class_embeddings.copy()
    assert rec["picks"] == b["indices"] and rec["labels"] == [NAMES[y[i]] for i in b["indices"]]
    assert rec["n_labeled"] == 10 and rec["fit_seconds"] > 0 and rec["heldout_accuracy"] is not None
    counts = np.bincount(y[b["indices"]], minlength=5)
    assert st["labels_per_class"] == {c: int(n) for c, n in zip(NAMES, counts)}
    assert st["never_labeled"] == [c for c, n in zip(NAMES, counts) if n == 0]
    # the saved model is the fit from zero-shot on the 10 labels, and reloads identically
    with open_session(session) as s:
        assert np.allclose(s.model().class_embeddings, w)
        assert not np.allclose(w, s.pool["text_features"])
    # importing again is refused: nothing applied twice
    with open_session(session) as s, pytest.raises(SessionError, match="no batch is waiting"):
        s.import_labels(f)


def test_import_warns_when_held_out_accuracy_falls_below_zero_shot(session, pool_file, tmp_path):
    """Stop 23 review: the loop and the benchmark flag rounds below zero-shot; a session did not."""
    from vlal.loop import BelowZeroShotWarning
    from vlal.session import format_status

    _, y = pool_file
    with open_session(session) as s:
        s.next(40)
    wrong = (y + 1) % 5  # every label wrong: the re-fitted model must get worse
    f = write_csv_labels(session, tmp_path / "l.csv", wrong, NAMES)
    with open_session(session) as s:
        with pytest.warns(BelowZeroShotWarning, match="below zero-shot"):
            rec = s.import_labels(f)
        st = s.status()
    assert rec["below_zero_shot"] and rec["heldout_accuracy"] < st["rounds"][0]["heldout_accuracy"] - 3
    assert [r["below_zero_shot"] for r in st["rounds"]] == [False, True]
    assert "points below zero-shot" in format_status(st)
    res = CliRunner().invoke(main, ["session", "status", str(session)])
    assert res.exit_code == 0 and " % !" in res.output


def test_import_rejects_each_bad_row_and_applies_nothing(session, pool_file, tmp_path):
    _, y = pool_file
    with open_session(session) as s:
        b = s.next(6)
        other = next(i for i in range(300) if i not in b["indices"])
        paths = s.pool["pool_paths"]
    before = (session / "state.json").read_bytes()
    bad = tmp_path / "bad.csv"
    with open(bad, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "label"])
        w.writerow(["/nowhere/x.png", "class 1"])                     # unknown image
        w.writerow([paths[other], "class 1"])                        # not in the batch
        w.writerow([paths[b["indices"][0]], "zebra"])                # unknown class
        w.writerow([paths[b["indices"][1]], "class 1"])
        w.writerow([paths[b["indices"][1]], "class 2"])              # conflicting labels
        w.writerow([paths[b["indices"][2]], ""])                     # skipped
    with open_session(session) as s, pytest.raises(ImportRejectedError) as err:
        s.import_labels(bad)
    msg = str(err.value)
    assert "line 2: unknown image '/nowhere/x.png'" in msg
    assert "line 3:" in msg and "not in the open batch" in msg
    assert "line 4:" in msg and "unknown class 'zebra'" in msg
    assert "line 6:" in msg and "'class 2' here but 'class 1' in line 5" in msg
    assert "line 7:" in msg and "empty label" in msg
    assert sum("of the batch is not in bad.csv" in p for p in err.value.problems) == 3
    assert (session / "state.json").read_bytes() == before


def test_import_labelstudio_export_conflict_skip_and_allow_skipped(session, pool_file, tmp_path):
    _, y = pool_file
    with open_session(session) as s:
        b = s.next(5)
    tasks_file = session / b["files"]["labelstudio"]
    skip_i = b["indices"][0]

    def labeler(task):
        i = task["data"]["vlal_index"]
        if i == skip_i:
            return [choice(None, cancelled=True)]
        return [choice(NAMES[y[i]])]

    export = ls_export(tasks_file, labeler)
    conflict = json.loads(json.dumps(export))
    conflict[1]["annotations"].append(choice(NAMES[(y[b["indices"][1]] + 1) % 5]))
    (tmp_path / "c.json").write_text(json.dumps(conflict))
    with open_session(session) as s, pytest.raises(ImportRejectedError) as err:
        s.import_labels(tmp_path / "c.json")
    assert "task 2 (id 101)" in str(err.value) and "different labels" in str(err.value)
    assert "task 1 (id 100)" in str(err.value) and "skipped in Label Studio" in str(err.value)  # numbered from 1, as CSV lines

    (tmp_path / "e.json").write_text(json.dumps(export))
    with open_session(session) as s:
        with pytest.raises(ImportRejectedError, match="skipped in Label Studio"):
            s.import_labels(tmp_path / "e.json")
        rec = s.import_labels(tmp_path / "e.json", allow_skipped=True)
        assert rec["skipped"] == [skip_i] and len(rec["picks"]) == 4
        assert skip_i not in s.state["labeled"]
        assert s.state["labels"] == [int(y[i]) for i in s.state["labeled"]]


def test_lock_refuses_second_process(session):
    code = (
        "import sys, time; from vlal.session import open_session\n"
        "s = open_session(sys.argv[1]); print('held', flush=True); time.sleep(30)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    p = subprocess.Popen([sys.executable, "-c", code, str(session)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert p.stdout.readline().strip() == "held"
        with pytest.raises(SessionLockedError, match=f"in use by process {p.pid}"):
            open_session(session)
    finally:
        p.kill()
        p.wait()
    # the holder died without cleaning up: its lock file (with its pid) is stale and is taken over
    assert json.loads((session / "lock").read_text())["pid"] == p.pid
    with open_session(session) as s:
        assert s.state["seq"] == 0


def test_open_rolls_back_an_interrupted_change(session):
    # What a process killed between journal 'begin' and the state commit leaves behind.
    orphan = session / "batches" / "round-001.csv"
    orphan.write_text("half")
    (session / ".state.json.x1y2z3.tmp").write_text("{")
    with open(session / "journal.jsonl", "a") as fh:
        fh.write(json.dumps({"txn": "t1", "seq": 1, "op": "next", "phase": "begin",
                             "writes": ["batches/round-001.csv"]}) + "\n")
        fh.write('{"txn": "t1", "seq": 1, "op": "ne')  # a torn line
    with open_session(session) as s:
        assert s.recovered.startswith("rolled back the interrupted next")
        assert not orphan.exists() and not (session / ".state.json.x1y2z3.tmp").exists()
        b = s.next(4)  # and it continues
    assert b["round"] == 1
    lines = [json.loads(ln) for ln in (session / "journal.jsonl").read_text().splitlines() if ln.endswith("}")]
    assert [e["phase"] for e in lines if e.get("txn") == "t1"] == ["begin", "rollback"]


def test_open_completes_a_committed_change(session):
    with open_session(session) as s:
        s.next(4)
    # a kill after state.json was replaced but before the journal's 'commit' line
    lines = (session / "journal.jsonl").read_text().splitlines()
    (session / "journal.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    with open_session(session) as s:
        assert s.recovered.startswith("completed the interrupted next")
        assert s.state["open_batch"]["round"] == 1
        assert (session / s.state["open_batch"]["files"]["csv"]).exists()


def test_cli_round_trip(tmp_path, pool_file):
    _, y = pool_file
    r = CliRunner()
    s = tmp_path / "cli"
    res = r.invoke(main, ["session", "init", str(s), "--features", str(pool_file[0]), "--strategy", "cec[k=5]"])
    assert res.exit_code == 0, res.output
    res = r.invoke(main, ["session", "next", str(s), "--budget", "8"])
    assert res.exit_code == 0 and "round 1: 8 images" in res.output
    bad = tmp_path / "bad.csv"
    bad.write_text("image,label\n/x.png,class 1\n")
    res = r.invoke(main, ["session", "import", str(s), str(bad)])
    assert res.exit_code == 1 and "line 2: unknown image '/x.png'" in res.output
    f = write_csv_labels(s, tmp_path / "l.csv", y, NAMES)
    res = r.invoke(main, ["session", "import", str(s), str(f)])
    assert res.exit_code == 0 and "8 labels applied" in res.output, res.output
    res = r.invoke(main, ["session", "status", str(s)])
    assert res.exit_code == 0 and "waiting for labels: nothing" in res.output and "pool 300 images, 8 labeled" in res.output
    res = r.invoke(main, ["session", "status", str(s), "--json"])
    assert json.loads(res.output)["n_labeled"] == 8


def test_whole_project_export_of_earlier_rounds(session, pool_file, tmp_path):
    """Label Studio exports every task of a project: earlier rounds' rows with the recorded label are
    left out; a changed label for an image labeled before is an error."""
    _, y = pool_file
    with open_session(session) as s:
        b1 = s.next(4)
    first = ls_export(session / b1["files"]["labelstudio"], lambda t: [choice(NAMES[y[t["data"]["vlal_index"]]])])
    (tmp_path / "e1.json").write_text(json.dumps(first))
    with open_session(session) as s:
        s.import_labels(tmp_path / "e1.json")
        b2 = s.next(4)
    second = first + ls_export(session / b2["files"]["labelstudio"],
                               lambda t: [choice(NAMES[y[t["data"]["vlal_index"]]])])
    changed = json.loads(json.dumps(second))
    i0 = changed[0]["data"]["vlal_index"]
    changed[0]["annotations"] = [choice(NAMES[(y[i0] + 1) % 5])]
    (tmp_path / "bad.json").write_text(json.dumps(changed))
    with open_session(session) as s, pytest.raises(ImportRejectedError, match=f"already labeled '{NAMES[y[i0]]}'"):
        s.import_labels(tmp_path / "bad.json")
    (tmp_path / "e2.json").write_text(json.dumps(second))
    with open_session(session) as s:
        rec = s.import_labels(tmp_path / "e2.json")
        assert rec["picks"] == b2["indices"] and rec["n_already_labeled_rows"] == 4
        assert s.state["labeled"] == b1["indices"] + b2["indices"]
