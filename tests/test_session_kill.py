"""Crash safety of vlal.session: SIGKILL `next` and `import` at random instants, many times.

After every kill the session must open (recovering what the kill interrupted), hold every
label accepted so far exactly once and with the label given, and go on to the next step.
A small synthetic pool and the feature tuner keep it fast (no torch).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from session_helpers import make_pool_file, write_csv_labels
from vlal.session import init_session, open_session

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")

NAMES = [f"class {i}" for i in range(6)]
# A fork server: it imports everything once, then forks one child per operation, so that the
# random delay before SIGKILL falls inside the operation itself (not in interpreter start-up).
DRIVER = """
import os, sys, time, traceback
import vlal.session, vlal.tuners, vlal.registry, vlal.strategies, faiss, sklearn.cluster, scipy.optimize
from vlal.session import open_session
print("READY", flush=True)
for line in sys.stdin:
    op, path, arg = line.rstrip("\\n").split("\\t")
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            with open_session(path) as s:
                s.next(int(arg)) if op == "next" else s.import_labels(arg)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    print("PID", pid, flush=True)
    _, status = os.waitpid(pid, 0)
    print("EXIT", status, "%.4f" % (time.perf_counter() - t0), flush=True)
"""


class _Server:
    def __init__(self):
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "OMP_NUM_THREADS": "1"}
        self.p = subprocess.Popen([sys.executable, "-c", DRIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, env=env)
        assert self.p.stdout.readline().strip() == "READY"

    def run(self, op, session, arg, delay=None):
        """One operation in a forked child; SIGKILL it after ``delay`` s (None: let it finish).
        Returns (completed, seconds)."""
        self.p.stdin.write(f"{op}\t{session}\t{arg}\n")
        self.p.stdin.flush()
        tag, pid = self.p.stdout.readline().split()
        assert tag == "PID"
        if delay is not None:
            time.sleep(delay)
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:  # it had already finished
                pass
        tag, status, secs = self.p.stdout.readline().split()
        status = int(status)
        assert tag == "EXIT"
        if os.WIFSIGNALED(status):
            assert os.WTERMSIG(status) == signal.SIGKILL
            return False, float(secs)
        assert os.WEXITSTATUS(status) == 0, f"{op} failed (see the captured stderr)"
        return True, float(secs)

    def close(self):
        self.p.stdin.close()
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


RECOVERED: list[str] = []


def _check(session, oracle, accepted: list[int]) -> dict:
    """Open (recovering), check the invariants, return the state."""
    with open_session(session) as s:
        if s.recovered:
            RECOVERED.append(s.recovered.split(" (")[0])
        st = s.state
        labeled, labels = st["labeled"], st["labels"]
        assert len(labeled) == len(set(labeled)), "a label applied twice"
        assert labels == [int(oracle[i]) for i in labeled], "a label changed"
        assert labeled[: len(accepted)] == accepted, "an accepted label was lost"
        assert sum(len(r.get("picks", [])) for r in st["rounds"]) == len(labeled)
        b = st["open_batch"]
        if b:
            assert not set(b["indices"]) & set(labeled)
            assert all((session / f).is_file() for f in b["files"].values())
        if st["model_file"]:
            assert (session / st["model_file"]).is_file()
        assert not list(session.glob(".*.tmp"))
        journal = []
        for ln in (session / "journal.jsonl").read_text().splitlines():
            try:
                journal.append(json.loads(ln))
            except ValueError:  # a line torn by a kill
                pass
        ended = {e.get("txn") for e in journal if e["phase"] in ("commit", "rollback")}
        assert all(e["txn"] in ended for e in journal if e["phase"] == "begin"), "a change left unresolved"
        s.model()  # the model loads (or is re-fitted from the labels)
        return st


@pytest.fixture
def server():
    srv = _Server()
    yield srv
    srv.close()


def test_sigkill_during_next_and_import(tmp_path, server):
    src, oracle = make_pool_file(tmp_path / "pool.npz", n=400, k=6, d=24)
    session = init_session(tmp_path / "s", src, strategy="cec", seed=1)
    rng = np.random.default_rng(12345)
    budget = 8
    # one undisturbed next + import to learn how long the operations take here
    dur = {"next": server.run("next", session, budget)[1]}
    lab = write_csv_labels(session, tmp_path / "labels.csv", oracle, NAMES)
    dur["import"] = server.run("import", session, lab)[1]
    accepted = _check(session, oracle, [])["labeled"]
    assert len(accepted) == budget

    kills = completed = 0
    batches: dict[int, list[int]] = {}
    for attempt in range(60):
        if kills >= 24:
            break
        st = _check(session, oracle, accepted)
        op = "import" if st["open_batch"] else "next"
        if op == "import":
            b = st["open_batch"]
            # a re-run `next` after a killed one must query the same batch (same state, same seed)
            assert batches.setdefault(b["round"], b["indices"]) == b["indices"]
            arg = write_csv_labels(session, tmp_path / "labels.csv", oracle, NAMES)
        else:
            arg = budget
        done, _ = server.run(op, session, arg, delay=rng.uniform(0, 1.3 * dur[op]))
        kills += not done
        completed += done
        st = _check(session, oracle, accepted)
        if op == "import" and st["labeled"] != accepted:
            assert st["labeled"] == accepted + b["indices"]  # all of the file, or nothing
        accepted = st["labeled"]
        if done:  # the process said it finished: its change must be there
            assert (st["open_batch"] is None) == (op == "import")
    assert kills >= 20, f"only {kills} kills landed inside an operation ({completed} completed first)"
    from collections import Counter

    print(f"{kills} kills, {completed} completed before the kill; on reopening: {dict(Counter(RECOVERED))}")

    # it continues: one more full round without kills
    st = _check(session, oracle, accepted)
    if not st["open_batch"]:
        server.run("next", session, budget)
    server.run("import", session, write_csv_labels(session, tmp_path / "labels.csv", oracle, NAMES))
    final = _check(session, oracle, accepted)
    assert final["open_batch"] is None and len(final["labeled"]) > len(accepted)
    with open_session(session) as s:
        assert s.status()["n_labeled"] == len(final["labeled"])
