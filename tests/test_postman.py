"""The Postman collection (postman/) passes end to end against a real server: gunicorn + worker, run by newman.

postman/run.sh starts its own embedded server from a fresh temporary instance folder, so this test needs no
fixture; it runs once, in the embedded half of the suite (the collection does not depend on the backend).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BACKEND

ROOT = Path(__file__).resolve().parent.parent
POSTMAN = ROOT / "postman"
NEWMAN = POSTMAN / "node_modules" / ".bin" / "newman"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(BACKEND.name == "services",
                       reason="the Postman run starts its own embedded server; it runs in the embedded half only"),
    pytest.mark.skipif(shutil.which("npm") is None or shutil.which("node") is None,
                       reason="Node.js/npm not installed: newman cannot run the Postman collection"),
]


def _tail(text: str, lines: int = 120) -> str:
    return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="module")
def newman_installed():
    """newman from postman/package-lock.json (`npm ci`); skip when it cannot be installed (no registry access)."""
    if not NEWMAN.exists():
        result = subprocess.run(["npm", "ci", "--prefix", str(POSTMAN), "--no-audit", "--no-fund"],
                                cwd=POSTMAN, capture_output=True, text=True, timeout=300)
        if result.returncode != 0 or not NEWMAN.exists():
            pytest.skip("could not install newman with `npm ci` in postman/ (is the npm registry reachable?): "
                        + _tail(result.stdout + result.stderr, 10))


def test_postman_collection_passes_with_newman(newman_installed):
    """postman/run.sh: fresh embedded server, the whole collection, every assertion green (exit 0)."""
    env = dict(os.environ)
    env.pop("POSTMAN_PORT", None)  # always a free port
    env["PYTHON_BIN_DIR"] = str(Path(sys.executable).parent)
    # Its own process group: on a timeout the whole run (script, gunicorn, worker, newman) is stopped, not orphaned.
    proc = subprocess.Popen([str(POSTMAN / "run.sh")], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # run.sh's trap stops the server and the worker
        try:
            output, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
        pytest.fail(f"postman/run.sh took more than 240 s:\n{_tail(output)}")
    assert proc.returncode == 0, f"postman/run.sh exited with {proc.returncode}:\n{_tail(output)}"
    assert "AssertionError" not in output
