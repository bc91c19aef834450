"""WORKER_METRICS_PORT: a consumer that does not share the web's metrics folder serves its own /metrics.

A module of its own: no other consumer (like the module-scoped `worker` fixture's) may take its reply.
"""
import urllib.error
import urllib.request

import pytest

from tests.chat_helpers import ChatUser
from tests.helpers import free_port, stop, wait_for
from tests.test_metrics import parse, value


def test_a_consumer_with_its_own_folder_serves_its_own_metrics(app, client, gemini, tmp_path):
    """WORKER_METRICS_PORT: a consumer that does not share the web's folder (another container) shows its replies
    on its own port, behind the same token."""
    from tests.conftest import WORKER_ENV
    from tests.helpers import start_worker
    port = free_port()
    consumer = start_worker(threads=2, GEMINI_BASE_URL=gemini.base_url, WORKER_METRICS_PORT=str(port),
                            METRICS_TOKEN="tok", PROMETHEUS_MULTIPROC_DIR=str(tmp_path), **WORKER_ENV)
    try:
        alice = ChatUser(app, client, pro=True)
        room = alice.room()
        posted = alice.say(room, "count me on the worker's port")
        assert alice.finished_reply(room, posted["reply"]["id"])["status"] == "complete"
        request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": "Bearer tok"})

        def scraped():
            with urllib.request.urlopen(request, timeout=5) as resp:
                samples = parse(resp.read().decode())
            return samples if value(samples, "gemini_backend_replies_finished_total", outcome="complete") else None

        samples = wait_for(scraped, timeout=10, what="the consumer's own /metrics")
        assert value(samples, "gemini_backend_replies_finished_total", outcome="complete") == 1
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert refused.value.code == 401
    finally:
        output = stop(consumer)
    assert "Traceback" not in output, output[-3000:]
