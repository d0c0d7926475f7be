"""The control socket of a run: how `status`, `inject`, `capture` and `down` reach the
process that owns the network.

One JSON object per line each way, on a Unix socket only root can open:
`{"method": "kill", "args": ["registrar-as1"]}` -> `{"ok": true, "result": ...}` or
`{"ok": false, "error": "no process 'x' ..."}`.  Only `api.REMOTE_METHODS` and `down` are
served; a bad request gets an error answer and never stops the server.
"""

from __future__ import annotations

import json
import os
import socket
import socketserver
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .api import REMOTE_METHODS, Testbed

EXPECTED = (KeyError, ValueError, TypeError, RuntimeError, OSError)


class ControlError(RuntimeError):
    pass


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        for line in self.rfile:
            reply = self.server.dispatch(line)
            self.wfile.write((json.dumps(reply) + "\n").encode())
            self.wfile.flush()


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, testbed: Testbed, on_down: Callable[[], None]):
        self.testbed, self.on_down, self.lock = testbed, on_down, threading.Lock()
        super().__init__(path, _Handler)

    def dispatch(self, line: bytes) -> dict:
        try:
            request = json.loads(line)
            method, args, kwargs = request["method"], request.get("args", []), request.get("kwargs", {})
            if not isinstance(args, list) or not isinstance(kwargs, dict):
                raise TypeError("args must be a list and kwargs an object")
        except (ValueError, KeyError, TypeError) as exc:
            return {"ok": False, "error": f"bad request: {exc}"}
        if method == "down":
            self.on_down()
            return {"ok": True, "result": "tearing down"}
        if method not in REMOTE_METHODS:
            return {"ok": False, "error": f"unknown method {method!r} (methods: {', '.join(REMOTE_METHODS)}, down)"}
        try:
            with self.lock:
                return {"ok": True, "result": getattr(self.testbed, method)(*args, **kwargs)}
        except EXPECTED as exc:
            return {"ok": False, "error": str(exc) or type(exc).__name__}


def serve(path: str, testbed: Testbed, on_down: Callable[[], None]) -> _Server:
    """Serve in a background thread; the caller shuts the server down at teardown."""
    Path(path).unlink(missing_ok=True)
    old = os.umask(0o077)
    try:
        server = _Server(path, testbed, on_down)
    finally:
        os.umask(old)
    threading.Thread(target=server.serve_forever, name="control", daemon=True).start()
    return server


class RemoteTestbed:
    """The methods of `Testbed` on a run owned by another process."""

    def __init__(self, socket_path: str, timeout: float = 120.0):
        self.path, self.timeout = socket_path, timeout

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.path)
            except OSError as exc:
                raise ControlError(f"cannot reach the testbed at {self.path}: {exc.strerror}") from None
            sock.sendall((json.dumps({"method": method, "args": list(args), "kwargs": kwargs}) + "\n").encode())
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    raise ControlError("the testbed closed the control connection")
                data += chunk
        reply = json.loads(data)
        if not reply["ok"]:
            raise ControlError(reply["error"])
        return reply["result"]

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method not in (*REMOTE_METHODS, "down"):
            raise AttributeError(method)
        return lambda *args, **kwargs: self.call(method, *args, **kwargs)
