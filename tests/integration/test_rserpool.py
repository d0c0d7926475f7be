"""RSerPool in a real testbed: 1 registrar, pool elements, 2 pool users, over SCTP and TCP.

One testbed per transport (userland SCTP here, kernel SCTP where the kernel has it, and
TCP), started from YAML like any user's: the registrar, the PEs (one process per pool
membership, several per host) and two PUs running echo sessions are real processes in
Mininet hosts.  Tests read the processes' JSON logs, run the PU tool (`python -m nodes.pu
resolve|report`) and a raw ASAP peer (`tests.asap_probe`) inside the hosts, inject faults
with the testbed's API, and decode a capture with tshark.  The order of the tests matters
where noted: faults come last.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from nodes.transport import backend_status
from nodes.transport.base import Backend
from nodes.wire import CauseCode, Deregistration, Registration
from nodes.wire.params import PoolElement, SctpTransport, TcpTransport
from nodes.wire.policies import RoundRobin
from testbed import schema
from testbed.api import Testbed
from tests.netlab import needs_root, tshark_fields

pytestmark = [pytest.mark.netns, needs_root]
ROOT = Path(__file__).resolve().parents[2]
KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT = 1.0, 1.0
REG_ID = 0x1000

POOLS = {  # pool -> (policy, per-PE option for pe1, pe2, pe3)
    "EchoPool": ("round-robin", [{}, {}, {}]),
    "WrrPool": ("weighted-round-robin", [{"weight": 1}, {"weight": 2}, {"weight": 3}]),
    "WrandPool": ("weighted-random", [{"weight": 1}, {"weight": 2}, {"weight": 3}]),
    "PrioPool": ("priority", [{"priority": 1}, {"priority": 5}, {"priority": 3}]),
    "LuPool": ("least-used", [{"load": 0.5}, {"load": 0.2}, {"load": 0.8}]),
}
POOL_NUMBER = {pool: n for n, pool in enumerate([*POOLS, "CutPool", "ReportPool", "CalcPool"], start=1)}
METRICS_PORT = 9301


def pe_id(pool: str, host: int) -> int:
    return 0x100 * POOL_NUMBER[pool] + host


def topology(backend: str) -> str:
    def pe(pool: str, host: int, policy: str, extra: dict, service: str = "echo", fixed: bool = True) -> str:
        options = {"backend": backend, "pe-id": hex(pe_id(pool, host)), "reregistration-interval": 300,
                   "fixed-load": fixed, **{k: v for k, v in extra.items() if k != "weight"}}  # fmt: skip
        weight = f", weight: {extra['weight']}" if "weight" in extra else ""
        return (f"          - pool-element: {{name: {pool.lower()}{host}, handle: {pool}, policy: {policy}"
                f"{weight}, service: {service}, options: {json.dumps(options)}}}\n")  # fmt: skip

    hosts = ""
    for host in (1, 2, 3):
        hosts += f"      pe{host}:\n        processes:\n"
        for pool, (policy, extras) in POOLS.items():
            hosts += pe(pool, host, policy, extras[host - 1])
        if host in (1, 2):  # least-used with the load the calc service really causes
            hosts += pe("CalcPool", host, "least-used", {}, service="calc", fixed=False)
    hosts += "      pe4:\n        processes:\n" + pe("CutPool", 4, "round-robin", {}) + pe("ReportPool", 4, "round-robin", {})
    registrar = {"backend": backend, "server-id": hex(REG_ID), "keepalive-interval": KEEPALIVE_INTERVAL,
                 "keepalive-timeout": KEEPALIVE_TIMEOUT, "announce-cycle": 0.5, "metrics-port": METRICS_PORT}  # fmt: skip
    pu = {"backend": backend, "reply-timeout": 1.0}
    return f"""
name: rsp-{backend.replace('-', '')}
domains:
  D1:
    networks: [a, b]
    hosts:
      reg:
        processes:
          - registrar: {{name: registrar, options: {json.dumps(registrar)}}}
{hosts}      pu1:
        processes:
          - pool-user: {{name: pu1, handle: EchoPool, workload: {{service: echo, rate: 20}}, options: {json.dumps(pu)}}}
      pu2:
        processes:
          - pool-user: {{name: pu2, handle: EchoPool, workload: {{service: echo, rate: 20}}, options: {json.dumps(pu)}}}
          - pool-user: {{name: calc, handle: CalcPool, workload: {{service: calc, rate: 40}}, options: {json.dumps(pu | {"work": 6000})}}}
"""


def _backends() -> list:
    status = backend_status()
    params = []
    for backend in (Backend.USRSCTP, Backend.KERNEL_SCTP, Backend.TCP):
        ok, why = status[backend]
        marks = [] if ok else [pytest.mark.skip(reason=why)]
        params.append(pytest.param(backend.value, marks=marks, id=backend.value))
    return params


class Run:
    """The testbed, and reading what its processes logged."""

    def __init__(self, tb: Testbed, backend: str) -> None:
        self.tb, self.backend = tb, backend

    def log(self, process: str) -> list[dict]:
        path = Path(self.tb.supervisor.get(process).log)
        lines = []
        for line in path.read_text().splitlines():
            if line.startswith("{"):
                try:
                    lines.append(json.loads(line))
                except ValueError:
                    pass
        return lines

    def events(self, process: str, name: str, **match: object) -> list[dict]:
        return [e for e in self.log(process) if e.get("event") == name and all(e.get(k) == v for k, v in match.items())]

    def wait_event(self, process: str, name: str, timeout: float, since: float = 0.0, **match: object) -> dict:
        """The first such event logged at or after `since` (unix time)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [e for e in self.events(process, name, **match) if e["t"] >= since]
            if found:
                return found[0]
            time.sleep(0.1)
        tail = self.log(process)[-8:]
        raise AssertionError(f"no {name} {match} in {process}'s log within {timeout} s; last: {tail}")

    def registered(self) -> set[str]:
        """The PEs in the registrar's handlespace now, replayed from its log."""
        present: set[str] = set()
        for e in self.log("registrar"):
            if e.get("event") == "pe-registered":
                present.add(e["pe_id"])
            elif e.get("event") == "pe-removed":
                present.discard(e["pe_id"])
        return present

    def address(self, host: str) -> str:
        return str(self.tb.plan.hosts[host].interfaces[0].address.ip)

    def python(self, host: str, *argv: str, timeout: float = 60) -> str:
        result = self.tb.exec(host, [sys.executable, *argv], timeout=timeout)
        assert result.returncode in (0, 1), f"{argv}: exit {result.returncode}: {result.stderr[-2000:]}"
        return result.stdout

    def resolve(self, pool: str, items: int | None = None, count: int = 1) -> dict:
        argv = ["-m", "nodes.pu", "--backend", self.backend, "--registrar", f"{self.address('reg')}:3863",
                "resolve", pool, "--json", "--count", str(count)]  # fmt: skip
        if items is not None:
            argv += ["--items", str(items)]
        return json.loads(self.python("pu1", *argv).strip().splitlines()[-1])

    def probe(self, target: str, *messages: bytes, expect: int = 1, host: str = "pu1", raw: bool = False) -> list[dict]:
        argv = ["-m", "tests.asap_probe", "--backend", self.backend, "--connect", target, "--expect", str(expect)]
        argv += ["--raw"] if raw else []
        for m in messages:
            argv += ["--send", m.hex()]
        return [json.loads(line) for line in self.python(host, *argv).splitlines() if line.startswith("{")]


@pytest.fixture(scope="module", params=_backends())
def run(request, tmp_path_factory):
    backend = request.param
    tb = Testbed(schema.parse(topology(backend)), run_root=tmp_path_factory.mktemp(f"rsp-{backend}"))
    with tb.up():
        r = Run(tb, backend)
        expected = {f"0x{pe_id(pool, h):08x}" for pool in POOLS for h in (1, 2, 3)}
        expected |= {f"0x{pe_id('CutPool', 4):08x}", f"0x{pe_id('ReportPool', 4):08x}"}
        expected |= {f"0x{pe_id('CalcPool', h):08x}" for h in (1, 2)}
        deadline = time.monotonic() + 40
        while r.registered() != expected and time.monotonic() < deadline:
            time.sleep(0.2)
        assert r.registered() == expected, r.log("registrar")[-10:]
        # Stable from the start: no association of a PE was lost or mistaken for another's.
        assert not r.events("registrar", "pe-removed"), r.events("registrar", "pe-removed")[:3]
        r.wait_event("pu1", "reply", 15)
        r.wait_event("pu2", "reply", 15)
        yield r


def first_counts(result: dict, pool: str) -> dict[int, int]:
    counts = {int(k, 16): v for k, v in result["first_counts"].items()}
    return {host: counts.get(pe_id(pool, host), 0) for host in (1, 2, 3)}


# --- registration and resolution --------------------------------------------------------


def test_registration_carries_the_association_addresses(run):
    result = run.resolve("EchoPool", items=0xFFFFFFFF)
    assert result["error"] is None
    by_id = {int(p["pe_id"], 16): p for p in result["pool_elements"]}
    assert set(by_id) == {pe_id("EchoPool", h) for h in (1, 2, 3)}
    for host in (1, 2, 3):
        pe = by_id[pe_id("EchoPool", host)]
        addresses = [str(i.address.ip) for i in run.tb.plan.hosts[f"pe{host}"].interfaces]
        # SCTP registers both homes of the dual-homed PE; TCP only the connection's address
        assert pe["addresses"] == (addresses if run.backend != "tcp" else addresses[:1])
        assert pe["home"] == f"0x{REG_ID:08x}" and pe["registration_life_ms"] == 3 * 300 * 1000
        assert pe["transport"] == ("tcp" if run.backend == "tcp" else "sctp")


def test_unknown_pool_handle(run):
    result = run.resolve("NoSuchPool")
    assert result["error"] == "UNKNOWN_POOL_HANDLE" and result["pool_elements"] == []


def test_handle_resolution_item_counts(run):
    assert len(run.resolve("EchoPool")["pool_elements"]) == 3  # the registrar's default maximum
    assert len(run.resolve("EchoPool", items=1)["pool_elements"]) == 1
    assert len(run.resolve("EchoPool", items=2)["pool_elements"]) == 2


def test_round_robin_counts(run):
    assert first_counts(run.resolve("EchoPool", items=1, count=30), "EchoPool") == {1: 10, 2: 10, 3: 10}


def test_weighted_round_robin_counts_follow_the_weights(run):
    # PEs that joined at different moments start in different rounds; once the laggards have
    # caught up (the warm-up), every window of 60 selections holds each PE weight x 10 times.
    run.resolve("WrrPool", items=1, count=60)
    assert first_counts(run.resolve("WrrPool", items=1, count=60), "WrrPool") == {1: 10, 2: 20, 3: 30}


def test_priority_always_gives_the_highest(run):
    assert first_counts(run.resolve("PrioPool", items=1, count=20), "PrioPool") == {1: 0, 2: 20, 3: 0}


def test_least_used_orders_by_load(run):
    result = run.resolve("LuPool", items=3, count=10)
    assert first_counts(result, "LuPool") == {1: 0, 2: 10, 3: 0}
    order = [int(p["pe_id"], 16) for p in result["pool_elements"]]
    assert order == [pe_id("LuPool", 2), pe_id("LuPool", 1), pe_id("LuPool", 3)]  # loads 0.2, 0.5, 0.8


def test_weighted_random_distribution(run):
    n = 600
    counts = first_counts(run.resolve("WrandPool", items=1, count=n), "WrandPool")
    expected = {1: n / 6, 2: n * 2 / 6, 3: n * 3 / 6}
    chi2 = sum((counts[h] - expected[h]) ** 2 / expected[h] for h in counts)
    assert chi2 < 13.8, (counts, chi2)  # 2 degrees of freedom, p = 0.001


def test_least_used_follows_the_measured_cpu_load(run):
    """The calc PU keeps one session: its PE burns CPU, measures it and re-registers with the
    higher load, so the registrar now puts the idle PE first."""
    serving = run.wait_event("calc", "reply", 15)["pe"]
    busy = next(h for h in (1, 2) if f"0x{pe_id('CalcPool', h):08x}" == serving)
    changed = run.wait_event(f"calcpool{busy}", "load-changed", 20)
    assert changed["to"] >= 0.05, changed
    time.sleep(0.5)
    result = run.resolve("CalcPool", items=2)
    loads = {int(p["pe_id"], 16): p["values"][0] / 0xFFFFFFFF for p in result["pool_elements"]}
    idle = pe_id("CalcPool", 3 - busy)
    assert int(result["pool_elements"][0]["pe_id"], 16) == idle, (loads, changed)
    assert loads[pe_id("CalcPool", busy)] > loads[idle] + 0.04, loads


def test_metrics_in_prometheus_text_format(run):
    url = f"http://{run.address('reg')}:{METRICS_PORT}/metrics"
    code = f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=5).read().decode())"
    text = run.python("reg", "-c", code)
    registered = [line for line in text.splitlines() if line.startswith("vnfpool_events_total") and '"pe-registered"' in line]
    assert registered and float(registered[0].rsplit(" ", 1)[1]) >= 3 * len(POOLS), registered
    gauge = next(line for line in text.splitlines() if line.startswith("vnfpool_pool_elements{"))
    assert float(gauge.rsplit(" ", 1)[1]) == len(run.registered())
    assert "# TYPE vnfpool_events_total counter" in text


# --- hostile and malformed input --------------------------------------------------------


def registrar_target(run) -> str:
    return f"{run.address('reg')}:3863"


def test_malformed_messages_get_errors_and_the_registrar_serves_on(run):
    good = Registration(pool_handle=b"ProbePool", pool_element=probe_pe(run, 0x777)).encode()
    bad_parameter_length = good[:6] + (len(good) + 40).to_bytes(2, "big") + good[8:]  # pool handle TLV
    unknown_type = bytes([0x55, 0, 0, 8, 0, 0, 0, 0])
    truncated = good[:6]
    truncated = truncated[:2] + len(truncated).to_bytes(2, "big") + truncated[4:]
    messages, expected = [bad_parameter_length, unknown_type, truncated], ["INVALID_VALUES", "UNRECOGNIZED_MESSAGE", "INVALID_VALUES"]
    if run.backend != "tcp":  # a byte stream is framed by this very field: no such message on TCP
        messages.append(good[:2] + (len(good) + 8).to_bytes(2, "big") + good[4:])
        expected.append("INVALID_VALUES")
    replies = run.probe(registrar_target(run), *messages, expect=len(messages))
    causes = [r["fields"]["error"][0]["cause"] for r in replies if r.get("type_name") == "ASAP_ERROR"]
    assert causes == expected, replies
    assert replies[-1]["event"] == "done" and replies[-1]["open"]
    assert run.events("registrar", "malformed-message")
    assert run.resolve("EchoPool")["error"] is None  # everyone else is still served


def test_a_stream_that_cannot_be_framed_is_closed_and_others_are_served(run):
    if run.backend != "tcp":
        pytest.skip("framing by the length field exists on byte streams only")
    replies = run.probe(registrar_target(run), bytes([0x05, 0, 0, 2]), expect=1, raw=True)
    assert replies[-1] == {"event": "done", "received": 0, "open": False}
    assert run.resolve("EchoPool")["error"] is None


def probe_pe(run, identifier: int) -> PoolElement:
    import ipaddress

    address = ipaddress.ip_address(run.address("pu1"))
    transport = TcpTransport(port=9, addresses=(address,)) if run.backend == "tcp" else SctpTransport(port=9, addresses=(address,))
    return PoolElement(identifier, 0, 10000, transport, RoundRobin())


def test_deregistering_someone_elses_pe_is_refused(run):
    victim = pe_id("EchoPool", 1)
    replies = run.probe(registrar_target(run), Deregistration(pool_handle=b"EchoPool", pe_id=victim).encode())
    response = replies[0]
    assert response["type_name"] == "ASAP_DEREGISTRATION_RESPONSE" and response["flag_names"] == ["reject"]
    assert response["fields"]["error"][0]["cause"] == CauseCode.REJECTED_SECURITY.name
    listed = {int(p["pe_id"], 16) for p in run.resolve("EchoPool", items=0xFFFFFFFF)["pool_elements"]}
    assert victim in listed


def test_hijacking_a_pe_identifier_is_refused(run):
    victim = pe_id("WrrPool", 2)
    replies = run.probe(registrar_target(run), Registration(pool_handle=b"WrrPool", pool_element=probe_pe(run, victim)).encode())
    assert replies[0]["flag_names"] == ["reject"]
    assert replies[0]["fields"]["error"][0]["cause"] == CauseCode.NON_UNIQUE_PE_IDENTIFIER.name
    listed = {p["pe_id"]: p for p in run.resolve("WrrPool", items=0xFFFFFFFF)["pool_elements"]}
    assert run.address("pu1") not in listed[f"0x{victim:08x}"]["addresses"]


def test_registration_with_foreign_addresses_is_refused(run):
    import ipaddress

    pe = probe_pe(run, 0x778)
    elsewhere = (ipaddress.ip_address(run.address("pe3")),)
    pe = PoolElement(pe.identifier, 0, 10000, type(pe.user_transport)(port=9, addresses=elsewhere), pe.policy)
    replies = run.probe(registrar_target(run), Registration(pool_handle=b"ProbePool", pool_element=pe).encode())
    assert replies[0]["fields"]["error"][0]["cause"] == CauseCode.RSPLIB_NO_USABLE_USER_ADDRESSES.name


def test_forged_cookie_is_refused_by_the_pe(run):
    from nodes import app
    from nodes.wire import CookieEcho

    pe = next(p for p in run.resolve("EchoPool", items=0xFFFFFFFF)["pool_elements"])
    target = f"{pe['addresses'][0]}:{pe['port']}"
    forged = CookieEcho(cookie=b"\x01" + bytes(80)).encode()
    echo = app.AppMessage(app.AppType.ECHO_REQUEST, 7, 0, b"after the forgery").encode()
    replies = run.probe(target, forged, echo, expect=3)
    kinds = [(r.get("type_name") or r.get("type")) for r in replies if r["event"] in ("message", "app")]
    assert "ASAP_ERROR" in kinds and "ECHO_REPLY" in kinds, replies
    error = next(r for r in replies if r.get("type_name") == "ASAP_ERROR")
    assert error["fields"]["error"][0]["cause"] == CauseCode.REJECTED_SECURITY.name
    reply = next(r for r in replies if r.get("type") == "ECHO_REPLY")
    assert reply["seq"] == 7 and reply["value"] == 1  # fresh session state, not the forger's


# --- reports, faults and failover (these change the pools: they run last) ---------------


def test_three_pu_reports_remove_a_pe(run):
    victim = f"0x{pe_id('ReportPool', 4):08x}"
    hosts = ["pu1", "pu1", "pu2", "pe1"]  # a host counts once, however often it reports
    still = []
    for host in hosts:
        out = run.python(host, "-m", "nodes.pu", "--backend", run.backend, "--registrar", registrar_target(run),
                         "report", "ReportPool", victim)  # fmt: skip
        still.append(json.loads(out.strip().splitlines()[-1])["still_listed"])
    assert still == [True, True, True, False]
    removed = run.events("registrar", "pe-removed", pe_id=victim)[-1]
    assert removed["reason"] == "3 unreachability reports"


def test_capture_decodes_as_asap_with_tshark(run, tmp_path):
    if not shutil.which("tshark"):
        pytest.skip("tshark is not installed")
    run.tb.capture_start(["reg"])
    time.sleep(0.2)
    run.resolve("EchoPool")
    time.sleep(KEEPALIVE_INTERVAL * 1.5)  # at least one keep-alive round
    files = run.tb.capture_stop()
    pcaps = [Path(f["file"]) for f in files if Path(f["file"]).exists()]
    assert pcaps, files
    types = Counter()
    for pcap in pcaps:
        for row in tshark_fields(pcap, "asap", "asap.message_type", "_ws.malformed", "ip.proto"):
            mtype = int(row[0].split(",")[0], 0)
            types[mtype] += 1
            assert row[1] == "", f"tshark flags a malformed ASAP message in {pcap}: {row}"
            announce = mtype == 0x0A  # SERVER_ANNOUNCE goes by UDP multicast
            assert row[2] == ("17" if announce else "6" if run.backend == "tcp" else "132"), row
    assert {5, 6, 7, 8, 10} <= set(types), types  # resolution, response, keep-alive, ack, announce


def test_sigkill_of_a_pe_fails_over_with_the_cookie(run):
    serving = run.events("pu1", "reply")[-1]["pe"]
    served_before = run.events("pu1", "reply")[-1]["served"]
    victim = next(f"echopool{h}" for h in (1, 2, 3) if f"0x{pe_id('EchoPool', h):08x}" == serving)
    killed_at = time.time()
    run.tb.kill(victim)
    failover = run.wait_event("pu1", "failover", 15)
    assert failover["to"] != serving and failover["restored_cookie"]
    replies = run.events("pu1", "reply")
    after = [r for r in replies if r["t"] > failover["t"] - 0.001]
    assert after and after[0]["pe"] == failover["to"]
    before = [r for r in replies if r["t"] < killed_at]
    # The session's state went on from the cookie: no reset of the served count, no gap.
    counts = [r["served"] for r in replies]
    assert counts == list(range(counts[0], counts[0] + len(counts))), counts[-20:]
    assert before[-1]["served"] >= served_before
    restored = [e for h in (1, 2, 3) for e in run.events(f"echopool{h}", "cookie-restored", **{"from": serving})]
    assert restored, "the new PE logged no cookie-restored"
    print(f"failover gap {failover['gap_ms']} ms (detected after {failover['detect_ms']} ms)")
    removed = run.wait_event("registrar", "pe-removed", KEEPALIVE_INTERVAL + KEEPALIVE_TIMEOUT + 8, since=killed_at, pe_id=serving)
    assert removed["reason"] in ("keep-alive timeout", "association lost") or removed["reason"].endswith("reports")


def test_pe_whose_link_is_cut_is_removed_within_interval_plus_timeout(run):
    victim = f"0x{pe_id('CutPool', 4):08x}"
    cut_at = time.time()
    for intf in ("eth0", "eth1"):
        run.tb.link_down(f"pe4:{intf}")
    removed = run.wait_event("registrar", "pe-removed", KEEPALIVE_INTERVAL + KEEPALIVE_TIMEOUT + 10, since=cut_at, pe_id=victim)
    took = removed["t"] - cut_at
    print(f"removed after {took:.2f} s ({removed['reason']}); bound {KEEPALIVE_INTERVAL + KEEPALIVE_TIMEOUT} s")
    assert removed["reason"] in ("keep-alive timeout", "association lost")
    assert took <= KEEPALIVE_INTERVAL + KEEPALIVE_TIMEOUT + 0.75  # slack: timers on two shared cores


def test_clean_shutdown_deregisters(run):
    victim = "lupool3"
    signalled = time.time()
    run.tb.supervisor.signal(victim, signal.SIGTERM)
    removed = run.wait_event("registrar", "pe-removed", 5, since=signalled, pe_id=f"0x{pe_id('LuPool', 3):08x}")
    assert removed["reason"] == "deregistered"
    assert run.events(victim, "deregistered")


def test_without_a_registrar_failover_uses_the_business_card(run):
    """Last: with the registrar dead, a PU whose PE dies falls back on the PE's business card."""
    cards = run.events("pu1", "business-card")
    assert cards and cards[-1]["candidates"], "pu1 got no business card with candidates"
    run.tb.kill("registrar")
    time.sleep(0.5)
    serving = run.events("pu1", "reply")[-1]["pe"]
    victim = next(f"echopool{h}" for h in (1, 2, 3) if f"0x{pe_id('EchoPool', h):08x}" == serving)
    before = len(run.events("pu1", "failover"))
    run.tb.kill(victim)
    deadline = time.monotonic() + 25
    while len(run.events("pu1", "failover")) == before and time.monotonic() < deadline:
        time.sleep(0.2)
    failovers = run.events("pu1", "failover")
    assert len(failovers) > before, run.log("pu1")[-8:]
    assert run.events("pu1", "using-business-card"), run.log("pu1")[-8:]
    assert failovers[-1]["to"] in cards[-1]["candidates"] and failovers[-1]["restored_cookie"]
