"""The controller's REST view: installed chains, their paths and instances, and its health.

    GET /health         {"ready": true, "switches": [...], "expected": 6}
    GET /chains         every chain: state, placement (path, legs, instances), moves
    GET /chains/NAME    one chain, with the rules installed for it

A thread of its own (os-ken's native hub is threads), on loopback only.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def serve(port: int, app: Any) -> ThreadingHTTPServer:
    handler = type("Handler", (_Handler,), {"app": app})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="rest", daemon=True).start()
    return server


class _Handler(BaseHTTPRequestHandler):
    app: Any

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = self.path.split("?", 1)[0].rstrip("/")
        try:
            if path == "/health":
                return self._send(200, self.app.health())
            if path == "/chains":
                return self._send(200, self.app.chains())
            if path.startswith("/chains/"):
                name = path.removeprefix("/chains/")
                found = [c for c in self.app.chains() if c["name"] == name]
                if not found:
                    return self._send(404, {"error": f"no chain {name!r}"})
                return self._send(200, found[0] | {"flows": self.app.flows(name)})
            return self._send(404, {"error": f"no resource {path!r} (try /chains, /health)"})
        except Exception as exc:  # noqa: BLE001 (a view must not take the controller down)
            return self._send(500, {"error": repr(exc)})

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body, indent=1).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
        pass
