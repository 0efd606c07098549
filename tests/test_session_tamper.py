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
