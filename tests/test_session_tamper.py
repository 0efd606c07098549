"""A session folder edited or corrupted by hand: clear SessionErrors, and no file outside the
session's own batch and model files is ever deleted (found by a new-user review, stop 22)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from session_helpers import make_pool_file
from vlal.session import SessionError, init_session, open_session


@pytest.fixture
def session(tmp_path):
    pool, _ = make_pool_file(tmp_path / "pool.npz")
    return init_session(tmp_path / "s", pool, strategy="cec", seed=3)


def _edit_json(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("target", ["absolute", "dotdot", "session file"])
def test_journal_cannot_make_recovery_delete_other_files(session, tmp_path, target):
    victim = {"absolute": tmp_path / "victim.txt", "dotdot": tmp_path / "victim2.txt",
              "session file": session / "pool.npz"}[target]
    if target != "session file":
        victim.write_text("keep me")
    rel = {"absolute": str(victim), "dotdot": "../victim2.txt", "session file": "pool.npz"}[target]
    with open(session / "journal.jsonl", "a") as fh:
        fh.write(json.dumps({"txn": "x", "seq": 99, "op": "next", "phase": "begin", "writes": [rel]}) + "\n")
    with pytest.raises(SessionError, match=r"journal\.jsonl names .* \(nothing was deleted\)"):
        open_session(session)
    assert victim.exists()
    with pytest.raises(SessionError, match="journal"):  # the CLI's status opens the same way
        open_session(session)


def test_journal_entry_without_integer_seq_is_refused(session):
    with open(session / "journal.jsonl", "a") as fh:
        fh.write(json.dumps({"txn": "x", "seq": "9", "op": "next", "phase": "begin", "writes": []}) + "\n")
        fh.write("5\n")  # a JSON line that is not an entry is skipped like a torn one
    with pytest.raises(SessionError, match="integer seq"):
        open_session(session)


def test_state_model_file_outside_the_session_is_refused(session, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    _edit_json(session / "state.json", model_file="../victim.txt")
    with pytest.raises(SessionError, match=r"state\.json names '\.\./victim\.txt'"):
        open_session(session)
    assert victim.read_text() == "keep me"


@pytest.mark.parametrize("change, match", [
    ({"labels": [99], "labeled": [0]}, r"class ids outside \[0, 5\)"),
    ({"labels": [1, 2], "labeled": [0]}, "one length"),
    ({"labels": [1, 2], "labeled": [0, 0]}, "repeated or negative"),
    ({"labels": ["a"], "labeled": [0]}, "lists of integers"),
    ({"labels": [True], "labeled": [0]}, "lists of integers"),
])
def test_state_labels_that_vlal_cannot_have_written_are_refused(session, change, match):
    _edit_json(session / "state.json", **change)
    with pytest.raises(SessionError, match=match):
        open_session(session)


def test_state_labeled_outside_the_pool_is_refused_when_the_pool_is_read(session):
    _edit_json(session / "state.json", labeled=[10 ** 6], labels=[0])
    with open_session(session) as s, pytest.raises(SessionError, match=r"labeled holds pool positions outside"):
        s.next(3)


def test_truncated_session_json_and_pool_npz_give_session_errors(session):
    (session / "pool.npz").write_bytes((session / "pool.npz").read_bytes()[:200])
    with open_session(session) as s, pytest.raises(SessionError, match=r"pool\.npz is unreadable"):
        s.next(3)
    (session / "session.json").write_text('{"format": "vlal-sess')
    with pytest.raises(SessionError, match=r"session\.json is unreadable"):
        open_session(session)


def test_class_names_that_do_not_match_the_pool_are_refused(session):
    cfg = json.loads((session / "session.json").read_text())
    _edit_json(session / "session.json", class_names=cfg["class_names"][:-1])
    with open_session(session) as s, pytest.raises(SessionError, match="does not match the session"):
        s.next(3)
    _edit_json(session / "session.json", class_names="abc")
    with pytest.raises(SessionError, match="class_names must be a non-empty list"):
        open_session(session)


def test_an_untouched_session_still_opens_and_runs(session):
    with open_session(session) as s:
        batch = s.next(3)
    assert batch["round"] == 1 and np.unique(batch["indices"]).size == 3


def _fill_batch_csv(session, oracle, names, edit=None):
    """The batch CSV that `next` wrote, its label column filled from ``oracle`` (as an annotator would)."""
    import csv

    state = json.loads((session / "state.json").read_text())
    src = session / state["open_batch"]["files"]["csv"]
    rows = list(csv.reader(src.open(newline="")))
    for row in rows[1:]:
        row[1] = names[oracle[int(row[2])]]
    if edit:
        edit(rows)
    out = session.parent / "filled.csv"
    with out.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return out, rows


def test_csv_pool_index_that_contradicts_the_image_is_rejected(tmp_path):
    from vlal.session import ImportRejectedError

    pool, y = make_pool_file(tmp_path / "pool.npz")
    s_dir = init_session(tmp_path / "s", pool, strategy="cec", seed=3)
    names = [f"class {i}" for i in range(5)]
    with open_session(s_dir) as s:
        s.next(3)

        def shift(rows):  # a pasted column one row off: pool_index no longer matches the image
            rows[1][2], rows[2][2] = rows[2][2], rows[1][2]

        bad, rows = _fill_batch_csv(s_dir, y, names, shift)
        with pytest.raises(ImportRejectedError, match=r"line 2: pool_index .* contradicts image"):
            s.import_labels(bad)
        assert s.state["labeled"] == []  # nothing applied
        good, _ = _fill_batch_csv(s_dir, y, names)
        rec = s.import_labels(good)
    assert sorted(rec["picks"]) == sorted(int(r[2]) for r in rows[1:])


def test_batch_csv_cells_that_look_like_formulas_are_escaped_and_read_back(tmp_path):
    """Class names such as '=1+1' were written raw into the CSV that annotators open in spreadsheets."""
    pool, y = make_pool_file(tmp_path / "pool.npz")
    names = ["=1+1", "+cmd", "-x", "@sum", "plain"]
    s_dir = init_session(tmp_path / "s", pool, strategy="cec", seed=3, class_names=names)
    with open_session(s_dir) as s:
        s.next(4)
        text = (s_dir / s.state["open_batch"]["files"]["csv"]).read_text()
        cells = [c for line in text.splitlines()[1:] for c in line.split(",")]
        assert not [c for c in cells if c and c[0] in "=+-@"]  # every formula-like cell starts with '
        assert any(c.startswith("'=1+1") or c.startswith("'+cmd") for c in cells)
        filled, _ = _fill_batch_csv(s_dir, y, ["'" + n if n[0] in "=+-@" else n for n in names])
        rec = s.import_labels(filled)  # escaped labels, as a spreadsheet may keep them, map to the classes
    assert sorted(rec["labels"]) == sorted(names[y[i]] for i in rec["picks"])


def _ls_batch(tmp_path):
    """A session with a 3-image batch open: ``(open session, its tasks file, class names, pool labels)``."""
    pool, y = make_pool_file(tmp_path / "pool.npz")
    s_dir = init_session(tmp_path / "s", pool, strategy="cec", seed=3)
    s = open_session(s_dir)
    s.next(3)
    return s, s_dir / s.state["open_batch"]["files"]["labelstudio"], s.class_names, y


def test_labelstudio_choices_given_as_a_string_is_one_label(tmp_path):
    """Stop 22 review: {"choices": "class 1"} (a string, not a list) was read as the labels of its characters."""
    from session_helpers import ls_export

    s, tasks, names, y = _ls_batch(tmp_path)
    with s:

        def label(task):
            return [{"id": 1, "result": [{"from_name": "label", "to_name": "image", "type": "choices",
                                          "value": {"choices": names[y[task["data"]["vlal_index"]]]}}]}]

        export = tmp_path / "export.json"
        export.write_text(json.dumps(ls_export(tasks, label)))
        rec = s.import_labels(export)
    assert rec["labels"] == [names[y[i]] for i in rec["picks"]]


def test_labelstudio_choices_of_another_control_are_not_the_label(tmp_path):
    """Stop 23 review: a second Choices control whose value happened to be a class name was applied as the label."""
    from session_helpers import ls_export

    s, tasks, names, y = _ls_batch(tmp_path)
    with s:
        wrong = {i: names[(y[i] + 1) % len(names)] for i in range(len(y))}

        def label(task, with_label=True):
            i = task["data"]["vlal_index"]
            res = [{"from_name": "quality", "to_name": "image", "type": "choices", "value": {"choices": [wrong[i]]}}]
            if with_label:
                res.append({"from_name": "label", "to_name": "image", "type": "choices",
                            "value": {"choices": [names[y[i]]]}})
            return [{"id": 1, "result": res}]

        export = tmp_path / "other-only.json"
        export.write_text(json.dumps(ls_export(tasks, lambda t: label(t, with_label=False))))
        with pytest.raises(SessionError, match="choices only from quality"):
            s.import_labels(export)
        export = tmp_path / "both.json"
        export.write_text(json.dumps(ls_export(tasks, label)))
        rec = s.import_labels(export)  # no "conflict": the other control is not a label
    assert rec["labels"] == [names[y[i]] for i in rec["picks"]]


def test_a_journal_writes_string_is_one_file_and_a_referenced_file_is_kept(session):
    """A 'writes' given as one string (not a list) is read as one name; the rollback never deletes a file
    the state still references (the open batch's CSV here)."""
    with open_session(session) as s:
        s.next(3)
        csv_file = session / s.state["open_batch"]["files"]["csv"]
    with open(session / "journal.jsonl", "a") as fh:
        fh.write(json.dumps({"txn": "y", "seq": 99, "op": "next", "phase": "begin",
                             "writes": "batches/round-001.csv"}) + "\n")
    with open_session(session) as s:
        assert s.recovered.startswith("rolled back")
    assert csv_file.exists()
