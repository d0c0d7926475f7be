"""The Information Base Element (sdn/ibe.py) as the testbed will run it: in a domain's gateway.

Two domains joined by a 10 ms link; AS1 has a registrar, two SF1 PEs and one SF2 PE, AS2 a
registrar.  The test writes the IBE's config as the testbed will, starts `python -m sdn.ibe`
in gw-as1 with `mnexec -a`, and asks it over its Unix socket from the root namespace, as the
SFC platform and the controller do: the pools, a live resolution and its round-robin, a PE's
death seen through the registrar's keep-alive supervision, a failure report, the delay to AS2,
the domain's resources, bad requests, and the socket gone after SIGTERM.

`test_program_life_without_a_registrar` needs no root: the program in this namespace with no
registrar answering (the 503s), its signals and its socket.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from testbed import runs, schema
from testbed.api import Testbed
from tests.netlab import needs_root

ROOT = Path(__file__).resolve().parents[2]

TOPOLOGY = """
name: {name}
domains:
  AS1:
    networks: [a]
    hosts:
      reg-as1:
        processes:
          - registrar: {{name: registrar-as1, options: {{keepalive-interval: 1, keepalive-timeout: 1}}}}
      sf1-as1-1:
        processes:
          - pool-element: {{name: sf1-as1-1, handle: SF1, policy: round-robin, service: echo}}
      sf1-as1-2:
        processes:
          - pool-element: {{name: sf1-as1-2, handle: SF1, policy: round-robin, service: echo}}
      sf2-as1-1:
        processes:
          - pool-element: {{name: sf2-as1-1, handle: SF2, policy: round-robin, service: echo}}
  AS2:
    networks: [a]
    hosts:
      reg-as2:
        processes:
          - registrar: {{name: registrar-as2, options: {{keepalive-interval: 1, keepalive-timeout: 1}}}}
links:
  - {{between: [AS1, AS2], delay: 10ms}}
"""


# -- a client over the Unix socket ----------------------------------------------------------------


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float = 15.0) -> None:
        super().__init__("ibe", timeout=timeout)
        self.socket_path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


def call(path: Path, method: str, target: str, body: bytes | None = None) -> tuple[int, Any]:
    """(status, JSON body or None); every body the IBE sends must be JSON."""
    conn = UnixHTTPConnection(path)
    try:
        conn.request(method, target, body=body, headers={"Content-Type": "application/json"} if body else {})
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    if response.status == 204:
        assert data == b""
        return 204, None
    assert response.getheader("Content-Type", "").startswith("application/json"), (target, data[:200])
    return response.status, json.loads(data)


def get(path: Path, target: str) -> Any:
    status, body = call(path, "GET", target)
    assert status == 200, (target, status, body)
    return body


# -- the IBE process ------------------------------------------------------------------------------


class IbeProcess:
    def __init__(self, argv: list[str], socket_path: Path, log: Path) -> None:
        self.socket, self.log = socket_path, log
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        with log.open("w") as out:
            self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)

    def wait_listening(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while '"event": "listening"' not in self.log.read_text():
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, self.log.read_text()[-3000:]
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                return self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        return self.proc.returncode

    def events(self) -> list[dict[str, Any]]:
        """Every line the IBE printed; each one must be a JSON event."""
        lines = [line for line in self.log.read_text().splitlines() if line.strip()]
        return [json.loads(line) for line in lines]


def ibe_config(status: dict[str, Any], run_id: str, poll: float = 0.5, probe: float = 1.0) -> dict[str, Any]:
    """What the testbed will write for AS1's IBE, from `tb.status()`."""
    hosts = {h["name"]: h for h in status["hosts"]}
    gw = hosts["gw-as1"]
    peer = next(i for i in hosts["gw-as2"]["interfaces"] if i["peer"] == "gw-as1")
    reg = hosts["reg-as1"]
    return {
        "name": "ibe-as1", "kind": "ibe", "host": "gw-as1", "domain": "AS1",
        "interfaces": [{"name": i["name"], "address": i["address"]} for i in gw["interfaces"]],
        "addresses": [i["address"].split("/")[0] for i in gw["interfaces"]],
        "registrars": [{"name": "registrar-as1", "host": "reg-as1", "port": 3863, "enrp_port": 9901,
                        "addresses": [i["address"].split("/")[0] for i in reg["interfaces"]]}],
        "ibe": {"socket": str(runs.REGISTRY / f"{run_id}.ibe-as1.sock"), "handles": ["SF1", "SF2", "SF3"],
                "hosts": {n: h["pid"] for n, h in hosts.items() if h["domain"] == "AS1"},
                "neighbours": {"AS2": peer["address"].split("/")[0]}, "poll_interval": poll, "probe_interval": probe},
    }  # fmt: skip


def wait_registered(tb: Testbed, count: int, timeout: float = 30.0) -> None:
    logs = [
        Path(tb.supervisor.get(p.name).log) for p in tb.plan.processes().values() if p.kind == "pool-element"
    ]  # type: ignore[union-attr]
    deadline = time.monotonic() + timeout
    while sum('"event": "registered"' in log.read_text() for log in logs if log.exists()) < count:
        assert time.monotonic() < deadline, f"fewer than {count} PEs registered within {timeout:g} s"
        time.sleep(0.2)


def pe_ids(pools: dict[str, Any], handle: str) -> set[int]:
    return {pe["pe_id"] for pe in pools["pools"][handle]}


# -- the test -------------------------------------------------------------------------------------


@pytest.mark.netns
@needs_root
def test_ibe_in_a_gateway(tmp_path: Path) -> None:
    name = f"ibe-{secrets.token_hex(3)}"
    with Testbed(schema.parse(TOPOLOGY.format(name=name)), run_root=tmp_path / "runs") as tb:
        wait_registered(tb, 3)
        status = tb.status()
        config = ibe_config(status, tb.plan.run_id)  # type: ignore[union-attr]
        (tmp_path / "ibe-as1.json").write_text(json.dumps(config, indent=2))
        sock = Path(config["ibe"]["socket"])
        gw_pid = next(h["pid"] for h in status["hosts"] if h["name"] == "gw-as1")
        argv = [
            "mnexec",
            "-a",
            str(gw_pid),
            sys.executable,
            "-m",
            "sdn.ibe",
            "--config",
            str(tmp_path / "ibe-as1.json"),
        ]
        ibe = IbeProcess(argv, sock, tmp_path / "ibe-as1.log")
        try:
            ibe.wait_listening()
            assert sock.is_socket() and (sock.stat().st_mode & 0o777) == 0o660
            survivor, victim = check_pools_and_resolve(tb, status, sock)
            check_report(tb, sock, victim)
            check_pe_death(tb, sock, survivor, victim)
            check_delays_and_resources(sock)
            check_bad_requests(sock)
            assert get(sock, "/health")["registrar"] == "ok"
        finally:
            rc = ibe.stop()
        print(f"IBE log: {len(ibe.events())} events")
        assert rc == 0, ibe.log.read_text()[-3000:]
        assert not sock.exists(), "the IBE left its socket behind"
        events = [e["event"] for e in ibe.events()]
        assert "listening" in events and events[-1] == "stopped", events


def check_pools_and_resolve(
    tb: Testbed, status: dict[str, Any], sock: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """/pools lists both SF1 PEs with their hosts' addresses; /resolve takes turns."""
    addresses = {
        h["name"]: sorted(i["address"].split("/")[0] for i in h["interfaces"]) for h in status["hosts"]
    }
    pools = get(sock, "/pools")
    assert pools["domain"] == "AS1" and pools["registrar"] == "ok" and pools["pools"]["SF3"] == []
    sf1 = pools["pools"]["SF1"]
    assert sorted(sorted(pe["addresses"]) for pe in sf1) == sorted(
        [addresses["sf1-as1-1"], addresses["sf1-as1-2"]]
    )
    assert [pe["addresses"] for pe in pools["pools"]["SF2"]] == [addresses["sf2-as1-1"]]
    assert all(
        pe["transport"] in ("sctp", "tcp") and pe["policy"] == "round-robin" and pe["port"] > 0 for pe in sf1
    )
    # Round-robin: the next resolution gives the other PE.  The IBE's own poll is a resolution
    # too and takes a turn; one landing between our two calls is retried (at 0.5 s, rare).
    for _ in range(5):
        first, second = (get(sock, "/resolve?handle=SF1")["pe"] for _ in range(2))
        if first["pe_id"] != second["pe_id"]:
            break
    assert {first["pe_id"], second["pe_id"]} == pe_ids(pools, "SF1"), (first, second)
    assert get(sock, "/resolve?handle=SF2")["pe"] == pools["pools"]["SF2"][0]
    status_code, body = call(sock, "GET", "/resolve?handle=SF3")
    assert status_code == 404 and "SF3" in body["error"]
    victim = next(pe for pe in sf1 if sorted(pe["addresses"]) == addresses["sf1-as1-2"])
    survivor = next(pe for pe in sf1 if pe is not victim)
    return survivor, victim


def check_report(tb: Testbed, sock: Path, victim: dict[str, Any]) -> None:
    """POST /unreachable reaches the registrar as ENDPOINT_UNREACHABLE."""
    body = json.dumps({"handle": "SF1", "pe_id": victim["pe_id"]}).encode()
    assert call(sock, "POST", "/unreachable", body) == (204, None)
    log = Path(tb.supervisor.get("registrar-as1").log)  # type: ignore[union-attr]
    wanted = f'"pe_id": "0x{victim["pe_id"]:08x}"'
    deadline = time.monotonic() + 10
    while not any(
        '"pe-reported-unreachable"' in line and wanted in line for line in log.read_text().splitlines()
    ):
        assert time.monotonic() < deadline, "the registrar never heard the report"
        time.sleep(0.1)


def check_pe_death(tb: Testbed, sock: Path, survivor: dict[str, Any], victim: dict[str, Any]) -> None:
    """Kill a PE: the registrar's keep-alive (1 s + 1 s) drops it, the next poll shows it."""
    tb.kill("sf1-as1-2")
    killed = time.monotonic()
    while victim["pe_id"] in pe_ids(pools := get(sock, "/pools"), "SF1"):
        assert time.monotonic() - killed < 20, pools
        time.sleep(0.1)
    took = time.monotonic() - killed
    print(f"/pools dropped the killed PE after {took:.2f} s")
    assert pools["pools"]["SF1"] == [survivor] and took < 15
    assert all(get(sock, "/resolve?handle=SF1")["pe"] == survivor for _ in range(3))


def check_delays_and_resources(sock: Path) -> None:
    delays = get(sock, "/delays")
    assert set(delays) == {"AS2"}
    print(f"/delays: {delays}")
    assert 8 <= delays["AS2"]["delay_ms"] <= 30 and delays["AS2"]["loss"] == 0.0, delays
    assert delays["AS2"]["rtt_ms"] == pytest.approx(2 * delays["AS2"]["delay_ms"], abs=0.01)
    resources = get(sock, "/resources")
    print(f"/resources: {resources}")
    assert resources["hosts"] == 4 and resources["unmeasured"] == ["gw-as1"]  # the IBE's own namespace
    assert set(resources["per_host"]) == {"reg-as1", "sf1-as1-1", "sf1-as1-2", "sf2-as1-1"}
    assert resources["cpu_cores"] == os.cpu_count() and 0 <= resources["cpu_utilization"] < 2
    assert resources["memory_mb"] > 30  # three Python nodes at least (a killed PE's host has its shell)


def check_bad_requests(sock: Path) -> None:
    for method, target, body, expected in [
        ("GET", "/resolve", None, 400),
        ("GET", "/resolve?handle=" + "x" * 64, None, 400),
        ("GET", "/no/such/path", None, 404),
        ("GET", "/unreachable", None, 405),
        ("POST", "/unreachable", b"{not json", 400),
        ("POST", "/unreachable", b'{"handle": "SF1", "pe_id": -5}', 400),
        ("POST", "/unreachable", b"[" * 200_000, 413),
    ]:
        status, answer = call(sock, method, target, body)
        assert status == expected and isinstance(answer["error"], str), (method, target, status, answer)
    raw = socket.socket(socket.AF_UNIX)  # not HTTP at all
    raw.connect(str(sock))
    raw.sendall(b"\x00\xff garbage\r\n\r\n")
    raw.recv(1000)
    raw.close()
    assert get(sock, "/health")["domain"] == "AS1"  # still serving


# -- the program alone ----------------------------------------------------------------------------


def test_program_life_without_a_registrar(tmp_path: Path) -> None:
    """No registrar answers: 503s with a reason; SIGINT removes the socket; a stale socket is
    replaced at start; a bad config is exit status 2."""
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sock = tmp_path / "ibe.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock))
    stale.close()
    config = {"name": "ibe-alone", "domain": "AS9", "addresses": ["127.0.0.1"],
              "registrars": [{"name": "r", "host": "h", "addresses": ["127.0.0.1"], "port": port, "enrp_port": 9901}],
              "ibe": {"socket": str(sock), "handles": ["SF1"], "neighbours": {"LO": "127.0.0.1"},
                      "hosts": {"me": os.getpid()}, "poll_interval": 0.2}}  # fmt: skip
    (tmp_path / "c.json").write_text(json.dumps(config))
    argv = [
        sys.executable,
        "-m",
        "sdn.ibe",
        "--config",
        str(tmp_path / "c.json"),
        "--backend",
        "tcp",
        "--timeout",
        "0.5",
    ]
    ibe = IbeProcess(argv, sock, tmp_path / "ibe.log")
    try:
        ibe.wait_listening()
        assert get(sock, "/health")["registrar"] == "unreachable"
        status, body = call(sock, "GET", "/pools")
        assert status == 503 and body["registrar"] == "unreachable"
        status, body = call(sock, "GET", "/resolve?handle=SF1")
        assert status == 503 and "unreachable" in body["error"]
        assert get(sock, "/delays")["LO"]["loss"] == 0.0
        assert get(sock, "/resources")["unmeasured"] == ["me"]  # our namespace is the IBE's
    finally:
        rc = ibe.stop(signal.SIGINT)
    assert rc == 0 and not sock.exists(), ibe.log.read_text()[-2000:]
    assert ibe.events()[-1]["event"] == "stopped"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**config, "ibe": {**config["ibe"], "handles": ["x" * 40]}}))
    result = subprocess.run([sys.executable, "-m", "sdn.ibe", "--config", str(bad)], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert result.returncode == 2 and "1 to 32 bytes" in result.stderr
