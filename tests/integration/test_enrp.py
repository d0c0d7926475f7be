"""ENRP between real registrars: three in one domain, a fourth that joins later, over SCTP.

One testbed from YAML (userland SCTP where the kernel has none): registrars reg1..reg3 and
reg4 (`start: manual`), six PEs on three hosts, each PE preferring a different registrar,
so that every registrar owns PEs of its own.  The tests read the handlespaces with the
hsdump tool (`python -m nodes.registrar.hsdump`, an ENRP peer), the processes' JSON logs and
a capture decoded by tshark.  Order matters: the faults (partition, SIGKILL) come last.
"""

from __future__ import annotations

import json
from ipaddress import ip_address
import shutil
import sys
import time
from pathlib import Path

import pytest

from nodes.transport import backend_status
from nodes.transport.base import Backend
from nodes.wire import HandleUpdate, Presence, UpdateAction
from nodes.wire.params import PoolElement, SctpTransport
from nodes.wire.policies import RoundRobin
from testbed import schema
from testbed.api import Testbed
from tests.netlab import needs_root, tshark_fields

pytestmark = [pytest.mark.netns, needs_root]

REGISTRARS = {f"registrar{i}": 0x1000 * i for i in (1, 2, 3, 4)}
PES = {  # name -> (host, pool, preferred registrar)
    "a1": ("pe1", "PoolA", "registrar1"), "b1": ("pe1", "PoolB", "registrar2"),
    "a2": ("pe2", "PoolA", "registrar2"), "b2": ("pe2", "PoolB", "registrar3"),
    "a3": ("pe3", "PoolA", "registrar3"), "b3": ("pe3", "PoolB", "registrar1"),
}  # fmt: skip
PE_IDS = {name: 0x500 + n for n, name in enumerate(PES, start=1)}
ENRP_TIMERS = {"peer-heartbeat-cycle": 0.5, "peer-max-time-last-heard": 2.0, "peer-max-time-no-response": 2.0,
               "mentor-discovery-timeout": 3.0, "takeover-expiry": 3.0, "keepalive-interval": 2.0,
               "keepalive-timeout": 2.0}  # fmt: skip  # loose enough for a loaded 2-core CI machine
BOUND = ENRP_TIMERS["peer-max-time-last-heard"] + ENRP_TIMERS["peer-max-time-no-response"]


def _backend() -> str:
    status = backend_status()
    for backend in (Backend.KERNEL_SCTP, Backend.USRSCTP):
        if status[backend][0]:
            return backend.value
    pytest.skip("no SCTP backend: " + "; ".join(status[b][1] for b in (Backend.KERNEL_SCTP, Backend.USRSCTP)))
    raise AssertionError


def topology(backend: str) -> str:
    hosts = ""
    for name, server_id in REGISTRARS.items():
        options = {"backend": backend, "server-id": hex(server_id), **ENRP_TIMERS}
        start = ", start: manual" if name == "registrar4" else ""
        hosts += f"      reg{name[-1]}:\n        processes:\n"
        hosts += f"          - registrar: {{name: {name}{start}, options: {json.dumps(options)}}}\n"
    by_host: dict[str, list[str]] = {}
    for pe, (host, pool, prefer) in PES.items():
        options = {"backend": backend, "pe-id": hex(PE_IDS[pe]), "prefer-registrar": prefer,
                   "reregistration-interval": 300, "fixed-load": True}  # fmt: skip
        by_host.setdefault(host, []).append(
            f"          - pool-element: {{name: {pe}, handle: {pool}, policy: round-robin, options: {json.dumps(options)}}}\n")
    for host, lines in by_host.items():
        hosts += f"      {host}:\n        processes:\n" + "".join(lines)
    return f"""
name: enrp-{backend.replace('-', '')}
domains:
  D1:
    networks: [a, b]
    hosts:
{hosts}      client:
        processes: []
"""


class Scope:
    """The running testbed, seen through hsdump and the logs."""

    def __init__(self, tb: Testbed, backend: str) -> None:
        self.tb, self.backend = tb, backend

    def address(self, host: str) -> str:
        return str(self.tb.plan.hosts[host].interfaces[0].address.ip)

    def addresses(self, host: str) -> list[str]:
        return [str(i.address.ip) for i in self.tb.plan.hosts[host].interfaces]

    def python(self, *argv: str, host: str = "client", timeout: float = 60) -> str:
        result = self.tb.exec(host, [sys.executable, *argv], timeout=timeout)
        assert result.returncode == 0, f"{argv}: exit {result.returncode}: {result.stdout[-1000:]} {result.stderr[-2000:]}"
        return result.stdout

    def hsdump(self, registrar: str) -> dict:
        host = f"reg{registrar[-1]}"
        out = self.python("-m", "nodes.registrar.hsdump", ",".join(self.addresses(host)), "--backend", self.backend,
                          "--json", "--timeout", "5")  # fmt: skip
        return json.loads(out)

    def view(self, registrar: str) -> set[tuple[str, str, str]]:
        """(pool, PE id, home registrar) of every PE in the registrar's handlespace."""
        dump = self.hsdump(registrar)
        return {(pool["handle"], pe["pe_id"], pe["home"]) for pool in dump["pools"] for pe in pool["pool_elements"]}

    def converged(self, registrars: list[str], timeout: float) -> dict[str, set]:
        deadline = time.monotonic() + timeout
        while True:
            views = {r: self.view(r) for r in registrars}
            if len({frozenset(v) for v in views.values()}) == 1 and len(next(iter(views.values()))) == len(PES):
                return views
            if time.monotonic() > deadline:
                raise AssertionError(f"handlespaces differ after {timeout} s: {views}")
            time.sleep(0.5)

    def log(self, process: str) -> list[dict]:
        path = Path(self.tb.supervisor.get(process).log)
        if not path.exists():
            return []  # not started (yet)
        return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]

    def events(self, process: str, name: str, since: float = 0.0) -> list[dict]:
        return [e for e in self.log(process) if e.get("event") == name and e["t"] >= since]

    def wait_event(self, process: str, name: str, timeout: float, since: float = 0.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found := self.events(process, name, since):
                return found[0]
            time.sleep(0.1)
        raise AssertionError(f"no {name} in {process}'s log within {timeout} s; last: {self.log(process)[-6:]}")


@pytest.fixture(scope="module")
def scope(tmp_path_factory):
    backend = _backend()
    tb = Testbed(schema.parse(topology(backend)), run_root=tmp_path_factory.mktemp("enrp"))
    with tb.up():
        s = Scope(tb, backend)
        for registrar in ("registrar1", "registrar2", "registrar3"):
            s.wait_event(registrar, "synchronised", 30)
        for pe in PES:
            s.wait_event(pe, "registered", 30)
        yield s


def home_of(view: set[tuple[str, str, str]]) -> dict[str, str]:
    return {pe_id: home for _, pe_id, home in view}


def test_pes_of_every_registrar_appear_in_every_handlespace(scope):
    views = scope.converged(["registrar1", "registrar2", "registrar3"], timeout=15)
    homes = home_of(views["registrar1"])
    for pe, (_, _, prefer) in PES.items():
        assert homes[f"0x{PE_IDS[pe]:08x}"] == f"0x{REGISTRARS[prefer]:08x}", homes
    dumps = {r: scope.hsdump(r) for r in ("registrar1", "registrar2", "registrar3")}
    assert len({json.dumps(d["checksums"], sort_keys=True) for d in dumps.values()}) == 1, dumps
    for name, dump in dumps.items():
        assert dump["registrar"]["presence_checksum_matches"] is True, (name, dump["registrar"])
        peers = {p["server_id"] for p in dump["peers"] or []}
        assert {f"0x{REGISTRARS[r]:08x}" for r in ("registrar1", "registrar2", "registrar3") if r != name} <= peers


def test_a_registrar_that_joins_later_synchronises_from_a_mentor(scope):
    since = time.time()
    scope.tb.start("registrar4")
    mentor = scope.wait_event("registrar4", "mentor-chosen", 15, since)
    synced = scope.wait_event("registrar4", "synchronised", 15, since)
    assert synced["how"] == f"from mentor {mentor['server_id']}" and synced["pool_elements"] == len(PES), synced
    scope.converged(["registrar1", "registrar2", "registrar3", "registrar4"], timeout=15)


def _probe(scope: Scope, *messages: bytes, expect: int = 0) -> list[dict]:
    argv = ["-m", "tests.asap_probe", "--enrp", "--backend", scope.backend, "--connect",
            f"{scope.address('reg1')}:9901", "--expect", str(expect), "--timeout", "1"]  # fmt: skip
    for m in messages:
        argv += ["--send", m.hex()]
    return [json.loads(line) for line in scope.python(*argv).splitlines() if line.startswith("{")]


def test_forged_enrp_messages_do_not_change_the_handlespace(scope):
    before = scope.view("registrar1")
    since = time.time()
    victim = next(pe for pe in PES if PES[pe][2] == "registrar2")
    victim_id = PE_IDS[victim]
    stranger, liar = 0x0BAD0001, 0x0BAD0002
    transport = SctpTransport(port=4000, addresses=(ip_address(scope.address("client")),))

    def pe(home: int, pe_id: int = 0x0BAD00FF) -> PoolElement:
        return PoolElement(pe_id, home, 60_000, transport, RoundRobin())

    def update(sender: int, element: PoolElement, action: UpdateAction = UpdateAction.ADD_PE, pool: str = "PoolA") -> bytes:
        return HandleUpdate(sender_id=sender, update_action=action, pool_handle=pool.encode(), pool_element=element).encode()

    _probe(scope, update(stranger, pe(stranger)))  # never said PRESENCE: unknown peer
    hello = Presence(sender_id=liar, checksum=0xFFFF).encode()
    _probe(scope, hello,
           update(liar, pe(REGISTRARS["registrar2"])),  # adds a PE in registrar2's name
           update(liar, pe(liar, victim_id), UpdateAction.DEL_PE, PES[victim][1]),  # deletes registrar2's PE
           update(REGISTRARS["registrar2"], pe(REGISTRARS["registrar2"]), UpdateAction.ADD_PE))  # fmt: skip  # poses as it
    time.sleep(1.0)
    assert scope.view("registrar1") == before
    refused = [e["reason"] for e in scope.events("registrar1", "enrp-refused", since)]
    refused += [e["reason"] for e in scope.events("registrar1", "handle-update-refused", since)]
    assert any("unknown peer" in r for r in refused), refused
    assert any("another home" in r for r in refused), refused
    assert any("not homed at the sender" in r for r in refused), refused
    assert any("belongs to another registrar" in r for r in refused), refused


def _block(scope: Scope, host: str, others: list[str], on: bool) -> None:
    """Cut `host` off from `others`: their unicast, and the presence group both ways."""
    rules = [(chain, flag, address) for other in others for address in scope.addresses(other)
             for chain, flag in (("INPUT", "-s"), ("OUTPUT", "-d"))]  # fmt: skip
    rules += [("INPUT", "-d", "239.0.0.51"), ("OUTPUT", "-d", "239.0.0.51")]
    for chain, flag, address in rules:
        result = scope.tb.exec(host, ["iptables", "-I" if on else "-D", chain, flag, address, "-j", "DROP"])
        assert result.returncode == 0, result.stderr


def test_a_partition_between_registrars_heals_to_identical_handlespaces(scope):
    since = time.time()
    survivors = ["registrar1", "registrar2", "registrar4"]
    _block(scope, "reg3", ["reg1", "reg2", "reg4"], on=True)
    try:
        deadline = time.monotonic() + BOUND + 10
        while not (started := [e for r in survivors for e in scope.events(r, "takeover-started", since)]):
            assert time.monotonic() < deadline, "no takeover of the cut-off registrar"
            time.sleep(0.1)
        assert started[0]["target"] == f"0x{REGISTRARS['registrar3']:08x}", started
        time.sleep(6.0)  # takeovers settle; registrar3's keep-alives to its moved PEs time out
    finally:
        _block(scope, "reg3", ["reg1", "reg2", "reg4"], on=False)
    completed = [e for r in survivors for e in scope.events(r, "takeover-completed", since)]
    assert len(completed) == 1, completed
    views = scope.converged([*survivors, "registrar3"], timeout=20)
    homes = set(home_of(views["registrar3"]).values())
    assert f"0x{REGISTRARS['registrar3']:08x}" not in homes, views["registrar3"]


def test_sigkill_of_a_registrar_leads_to_one_takeover_and_re_homed_pes(scope, tmp_path):
    victim = "registrar2"
    before = home_of(scope.view("registrar1"))
    owned = {pe for pe, home in before.items() if home == f"0x{REGISTRARS[victim]:08x}"}
    assert owned, before
    scope.tb.capture_start(["pe1", "pe2", "pe3"])
    since = time.time()
    scope.tb.kill(victim)
    survivors = ["registrar1", "registrar3", "registrar4"]
    deadline = time.monotonic() + BOUND + 15
    completed: list[dict] = []
    while time.monotonic() < deadline and not completed:
        completed = [dict(e, by=r) for r in survivors for e in scope.events(r, "takeover-completed", since)]
        time.sleep(0.2)
    time.sleep(2.0)
    captures = scope.tb.capture_stop()
    completed = [dict(e, by=r) for r in survivors for e in scope.events(r, "takeover-completed", since)]
    assert len(completed) == 1, completed
    winner = completed[0]["by"]
    print(f"takeover by {winner} {completed[0]['t'] - since:.2f} s after the kill (bound {BOUND} s + a cycle)")
    assert completed[0]["target"] == f"0x{REGISTRARS[victim]:08x}"
    views = scope.converged(survivors, timeout=15)
    homes = home_of(views["registrar1"])
    assert {pe for pe in owned if homes[pe] == f"0x{REGISTRARS[winner]:08x}"} == owned, homes
    assert f"0x{REGISTRARS[victim]:08x}" not in homes.values()
    for pe in PES:
        if f"0x{PE_IDS[pe]:08x}" in owned:
            assert scope.events(pe, "home-changed", since), pe
    if shutil.which("tshark"):
        pcaps = [Path(c["file"]) for c in captures if Path(c["file"]).exists()]
        rows = [row for p in pcaps for row in tshark_fields(p, "asap.message_type == 7", "asap.h_bit", "ip.proto")]
        homed = [r for r in rows if r[0] in ("1", "True")]
        assert len(homed) >= len(owned), rows[:20]
        assert all(r[1] == "132" for r in homed) or scope.backend not in ("usrsctp", "kernel-sctp"), homed
