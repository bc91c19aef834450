"""A real browser (headless Chromium) loads /docs from a running gunicorn with no internet and shows the operations."""
import shutil
import subprocess
import tempfile

import pytest

from tests.helpers import free_port, start_web, stop

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium; "
                                                         ".ci/run installs it)")


def test_swagger_ui_renders_every_tag_offline(app):
    """Chromium renders Swagger UI from the app's own assets: the operations appear in the page."""
    port = free_port()
    web = start_web(port)
    profile = tempfile.mkdtemp(prefix="gb-chromium-")
    try:
        result = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
             f"--user-data-dir={profile}", "--virtual-time-budget=15000", "--dump-dom",
             f"http://127.0.0.1:{port}/docs"],
            capture_output=True, text=True, timeout=120)
    finally:
        stop(web)
        shutil.rmtree(profile, ignore_errors=True)
    dom = result.stdout
    assert "swagger-ui" in dom, result.stderr[-2000:]
    for text in ("/auth/verify-otp", "/chatroom/{room_id}/message", "/subscribe/pro", "/webhook/stripe", "Authorize"):
        assert text in dom, f"{text!r} not rendered; stderr: {result.stderr[-1000:]}"
