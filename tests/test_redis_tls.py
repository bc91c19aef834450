"""`rediss://` (Redis over TLS, as managed Redis offers) works for the queue, limits, cache and streams."""
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from tests.conftest import BACKEND
from tests.helpers import ROOT, child_env, free_port

pytestmark = pytest.mark.skipif(BACKEND.name != "services" or not shutil.which("redis-server")
                                or not shutil.which("openssl"),
                                reason="needs the services backend, redis-server with TLS and openssl")

PROBE = r"""
from gemini_backend import create_app
from gemini_backend.extensions import cache, get_redis, huey
from gemini_backend.services import quota, streams
app = create_app()
with app.app_context():
    assert app.config["REDIS_URL"].startswith("rediss://")
    assert get_redis().ping()
    ticket = quota.reserve_message(1, "basic")
    assert quota.usage(1, "basic")["used_today"] == 1
    cache.set("tls-probe", "ok"); assert cache.get("tls-probe") == "ok"
    from gemini_backend.tasks import purge_expired
    purge_expired(); assert huey.pending_count() == 1
    streams.AttemptStream(7, 1).delta("hello")
    assert get_redis().xlen(streams.stream_key(7)) == 1
print("TLS-OK")
"""


@pytest.fixture()
def tls_redis():
    folder = tempfile.mkdtemp(prefix="gb-tls-")
    key, cert = os.path.join(folder, "key.pem"), os.path.join(folder, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", "0", "--tls-port", str(port), "--tls-cert-file", cert,
                             "--tls-key-file", key, "--tls-ca-cert-file", cert, "--tls-auth-clients", "no",
                             "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    yield f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={cert}"
    proc.terminate()
    proc.wait()
    shutil.rmtree(folder, ignore_errors=True)


def test_every_redis_user_works_over_tls(tls_redis, app):
    """Queue (Huey), limits (Flask-Limiter), cache (Flask-Caching) and reply streams all talk TLS."""
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=child_env(REDIS_URL=tls_redis),
                            capture_output=True, text=True, timeout=60)
    assert "TLS-OK" in result.stdout, result.stdout + result.stderr
