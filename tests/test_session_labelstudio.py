"""A real Label Studio round trip: `vlal session next` -> Label Studio -> annotations -> export -> import.

Starts a Label Studio server on 127.0.0.1 (SQLite in a temporary folder, offline, a user and a
legacy API token from environment variables, local-files serving of the images), creates a
project with the labeling config vlal wrote, imports the batch, annotates through the API with
label-studio-sdk (one task skipped), exports, imports the export into the session, and stops
the server. Label Studio pins many packages, so it lives in its own venv: point
``VLAL_LABEL_STUDIO`` at that venv's ``label-studio`` executable (``.ci/run`` does this); the
SDK is run with the Python beside it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import time
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from session_helpers import make_pool_file
from vlal.cli import main

LS = os.environ.get("VLAL_LABEL_STUDIO")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not LS or not Path(LS).is_file(),
                       reason="Label Studio not installed: set VLAL_LABEL_STUDIO=/path/to/venv/bin/label-studio "
                              "(pip install label-studio label-studio-sdk in a separate venv; .ci/run does)"),
]
TOKEN = "vlal0test0token0123456789"
NAMES = [f"class {i}" for i in range(5)]


def _png(path: Path, value: int) -> None:
    """A 16 x 16 grey PNG (no PIL needed)."""
    raw = b"".join(b"\x00" + bytes([value]) * 16 for _ in range(16))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def label_studio(tmp_path):
    """A running server: yields (url, image root); always stopped afterwards."""
    port = _free_port()
    images = tmp_path / "data" / "img"  # the local storage; the document root is its parent
    images.mkdir(parents=True)
    env = {**os.environ,
           "LABEL_STUDIO_BASE_DATA_DIR": str(tmp_path / "ls-data"),
           "LABEL_STUDIO_USERNAME": "vlal@example.com", "LABEL_STUDIO_PASSWORD": "vlal-test-password",
           "LABEL_STUDIO_USER_TOKEN": TOKEN, "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
           "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true", "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(images.parent),
           "LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false", "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": ""}
    log = open(tmp_path / "label-studio.log", "wb")
    proc = subprocess.Popen([LS, "start", "--no-browser", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            if proc.poll() is not None:
                pytest.fail(f"Label Studio exited ({proc.returncode}):\n{(tmp_path / 'label-studio.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url + "/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("Label Studio did not answer /health within 600 s")
            time.sleep(2)
        yield url, images
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
        log.close()


def test_label_studio_round_trip(tmp_path, label_studio):
    url, images = label_studio
    src, oracle = make_pool_file(tmp_path / "pool.npz", n=120, k=5)
    z = dict(np.load(src))
    z["pool_paths"] = np.array([str(images / f"{i:04d}.png") for i in range(120)])
    np.savez(src, **z)
    for i in range(120):
        _png(images / f"{i:04d}.png", (37 * i) % 256)
    s = tmp_path / "session"
    r = CliRunner()
    assert r.invoke(main, ["session", "init", str(s), "--features", str(src)]).exit_code == 0
    res = r.invoke(main, ["session", "next", str(s), "--budget", "6"])
    assert res.exit_code == 0, res.output
    batch = json.loads((s / "state.json").read_text())["open_batch"]
    skip = batch["indices"][0]
    answers = {str(i): (None if i == skip else NAMES[oracle[i]]) for i in batch["indices"]}
    (tmp_path / "answers.json").write_text(json.dumps(answers))
    export = tmp_path / "export.json"
    driver = Path(__file__).with_name("labelstudio_driver.py")
    py = os.environ.get("VLAL_LABEL_STUDIO_PYTHON", str(Path(LS).with_name("python")))
    run = subprocess.run([py, str(driver), url, TOKEN, str(s / "labelstudio.xml"), str(s / batch["files"]["labelstudio"]),
                          str(images), str(tmp_path / "answers.json"), str(export)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    info = json.loads(run.stdout.strip().splitlines()[-1])
    print("Label Studio versions:", info["versions"])
    assert info["n_tasks"] == 6
    tasks = json.loads((s / batch["files"]["labelstudio"]).read_text())
    ours = {t["data"]["vlal_index"]: t["predictions"][0]["result"][0]["value"]["choices"] for t in tasks}
    for t in info["tasks"]:
        assert t["predictions"] == ours[t["vlal_index"]], "the pre-annotation did not reach Label Studio"
        assert t["image_ok"], "Label Studio did not serve the image URL vlal wrote"

    res = r.invoke(main, ["session", "import", str(s), str(export)])
    assert res.exit_code == 1 and "skipped in Label Studio" in res.output
    res = r.invoke(main, ["session", "import", str(s), str(export), "--allow-skipped"])
    assert res.exit_code == 0, res.output
    assert "round 1: 5 labels applied, 1 skipped" in res.output
    state = json.loads((s / "state.json").read_text())
    assert sorted(state["labeled"]) == sorted(i for i in batch["indices"] if i != skip)
    assert state["labels"] == [int(oracle[i]) for i in state["labeled"]]
