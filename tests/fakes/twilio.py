"""A fake Twilio Messages API on 127.0.0.1: POST /2010-04-01/Accounts/{sid}/Messages.json, form-encoded, basic auth."""
from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


class FakeTwilio:
    """Records sent messages; answers 201 like Twilio, 401 on bad credentials, or `fail_status` when set."""

    def __init__(self, account_sid: str = "AC_test", auth_token: str = "token_test") -> None:
        self.account_sid, self.auth_token = account_sid, auth_token
        self.messages: list[dict[str, str]] = []
        self.fail_status: int | None = None
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                expected = "Basic " + base64.b64encode(f"{fake.account_sid}:{fake.auth_token}".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    return self._send(401, {"code": 20003, "message": "Authenticate", "status": 401})
                if self.path != f"/2010-04-01/Accounts/{fake.account_sid}/Messages.json":
                    return self._send(404, {"code": 20404, "message": "Not found", "status": 404})
                if fake.fail_status:
                    return self._send(fake.fail_status, {"code": 21211, "message": "Invalid 'To' Phone Number",
                                                         "status": fake.fail_status})
                form = {k: v[0] for k, v in parse_qs(body).items()}
                fake.messages.append(form)
                self._send(201, {"sid": f"SM{len(fake.messages):032d}", "status": "queued", "to": form.get("To"),
                                 "from": form.get("From"), "body": form.get("Body")})

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeTwilio":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
