"""The chain probe (sdn/probe.py): payloads, parsing what the SFs stamped, the receiver's tally,
and the two subcommands end to end over loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from nodes.pe.forwarder import process
from sdn import probe
from sdn.probe import Probe, Tally

ROOT = Path(__file__).resolve().parents[2]


def test_payload_and_padding():
    assert probe.payload(7, 123) == b"VTB-SFC seq=7 t=123"
    padded = probe.payload(7, 123, 40)
    assert len(padded) == 40 and padded.endswith(b".") and padded.startswith(b"VTB-SFC seq=7 t=123.")
    assert probe.payload(7, 123, 5) == b"VTB-SFC seq=7 t=123"  # never cut


def test_parse_reads_the_stamps_in_order():
    data = probe.payload(3, 99, 64) + b" >sf1-as1-1 >sf2-as2-1"
    assert probe.parse(data) == Probe(3, 99, ("sf1-as1-1", "sf2-as2-1"))
    assert probe.parse(b"VTB-SFC seq=1") == Probe(1, None, ())


@pytest.mark.parametrize("data", [b"", b"hello", b"VTB-SFC", b"VTB-SFC t=5", b"VTB-SFC seq=x t=1", b"vtb-sfc seq=1"])
def test_what_is_not_a_probe(data: bytes):
    assert probe.parse(data) is None


@given(st.integers(1, 2**40), st.integers(0, 2**63), st.integers(0, 300),
       st.lists(st.from_regex(r"[a-z0-9][a-z0-9-]{0,15}", fullmatch=True), max_size=5))  # fmt: skip
def test_parse_inverts_payload_and_stamps(seq: int, t: int, size: int, names: list[str]):
    data = probe.payload(seq, t, size) + b"".join(b" >" + n.encode() for n in names)
    assert probe.parse(data) == Probe(seq, t, tuple(names))


@given(st.binary(max_size=200))
def test_parse_never_raises(data: bytes):
    probe.parse(data)
    probe.parse(probe.MAGIC + data)


def test_what_the_forwarder_stamps_the_probe_reads():
    from tests.unit.test_forwarder import frame  # the same frames the forwarder's tests use

    data = frame(payload=probe.payload(4, 1000, 50))
    for name in ("sf1-as1-1", "sf3-as3-2"):
        data = process(data, name).frame
    assert probe.parse(data[18 + 28 :]) == Probe(4, 1000, ("sf1-as1-1", "sf3-as3-2"))


def test_the_tally():
    t = Tally()
    arrivals = [(1, ("a", "b"), 10.0), (2, ("a", "b"), 10.1), (5, ("a", "c"), 10.4), (4, ("a", "b"), 10.45),
                (4, ("a", "b"), 10.5)]  # fmt: skip
    for seq, stamps, at in arrivals:
        t.add(Probe(seq, None, stamps), at)
    t.add(None, 10.6)  # a stray datagram
    s = t.summary()
    assert s == {"summary": True, "received": 5, "lost": 1, "max_gap_ms": 300.0,
                 "paths": {"a>b": 4, "a>c": 1}, "duplicates": 1, "reordered": 1, "other": 1}  # fmt: skip
    assert Tally().summary()["lost"] == 0 and Tally().summary()["max_gap_ms"] == 0.0


def test_record():
    line = probe.record(Probe(2, 1_000_000, ("sf1",)), ("10.0.0.1", 4000), 3_500_000)
    assert line == {"seq": 2, "stamps": ["sf1"], "t_sent": 1_000_000, "t_received": 3_500_000,
                    "source": "10.0.0.1:4000", "delay_ms": 2.5}  # fmt: skip
    assert probe.record(Probe(2, None, ()), ("::1", 9, 0, 0), 1)["source"] == "[::1]:9"


def test_cli_checks():
    with pytest.raises(SystemExit):
        probe.main(["send", "10.0.0.1", "--count", "1", "--duration", "1"])
    with pytest.raises(SystemExit):
        probe.main(["send", "not-an-address"])
    with pytest.raises(SystemExit):
        probe.main(["receive", "--count", "0"])


# ------------------------------------------------------------------ end to end on loopback


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _probe(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "sdn.probe", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)  # fmt: skip


def _wait_bound(port: int) -> None:
    """Until something listens on UDP `port` (the receiver has started)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return
        time.sleep(0.05)
    raise AssertionError(f"no receiver on port {port}")


def test_send_and_receive_over_loopback():
    port = _free_port()
    receiver = _probe("receive", "--port", str(port), "--bind", "127.0.0.1", "--count", "5", "--json")
    _wait_bound(port)
    sender = subprocess.run([sys.executable, "-m", "sdn.probe", "send", "127.0.0.1", "--port", str(port), "--count",
                             "5", "--rate", "100", "--size", "64", "--source-port", str(_free_port())],
                            capture_output=True, text=True, cwd=ROOT, timeout=30)  # fmt: skip
    summary = json.loads(sender.stdout)
    assert summary["sent"] == 5 and summary["errors"] == 0 and summary["t_first_sent"] <= summary["t_last_sent"]
    out, err = receiver.communicate(timeout=30)
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines.pop(0) == {"listening": f"127.0.0.1:{port}"}
    assert [line["seq"] for line in lines[:-1]] == [1, 2, 3, 4, 5], err
    assert all(line["stamps"] == [] and line["t_sent"] <= line["t_received"] for line in lines[:-1])
    assert lines[-1]["summary"] and lines[-1]["received"] == 5 and lines[-1]["lost"] == 0
    assert lines[-1]["paths"] == {"": 5} and 5 <= lines[-1]["max_gap_ms"] < 1000


def test_the_receiver_gives_up_after_the_timeout_and_summarises_on_sigterm():
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "sdn.probe", "receive", "--port", str(_free_port()), "--bind",
                          "127.0.0.1", "--timeout", "0.5"], capture_output=True, text=True, cwd=ROOT, timeout=30).stdout  # fmt: skip
    assert json.loads(out)["received"] == 0 and time.monotonic() - started < 10
    port = _free_port()
    receiver = _probe("receive", "--port", str(port), "--bind", "127.0.0.1", "--timeout", "60")
    _wait_bound(port)
    receiver.send_signal(signal.SIGTERM)
    out, _ = receiver.communicate(timeout=10)
    assert receiver.returncode == 0 and json.loads(out)["summary"] is True


def test_send_for_a_duration():
    out = subprocess.run([sys.executable, "-m", "sdn.probe", "send", "127.0.0.1", "--port", str(_free_port()),
                          "--duration", "0.3", "--rate", "20"], capture_output=True, text=True, cwd=ROOT, timeout=30).stdout  # fmt: skip
    assert 5 <= json.loads(out)["sent"] <= 7  # 0.3 s at 20/s: seq 1..6
