"""The IBE's pure parts (sdn/ibe.py, sdn/ibe_resources.py) and its HTTP API over a fake pool user.

Config parsing, ping's summary, the resource figures from a fake /proc, how PEs and resolutions
become JSON, and every endpoint with good and bad requests; the socket's life (stale replaced,
live refused, removed only if ours).  No registrar, no namespace: tests/integration/test_ibe.py
runs the real thing in a testbed.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import json
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from nodes import node
from nodes.pu.core import Resolution
from nodes.runtime import EventLog
from nodes.wire import PoolElement
from nodes.wire.params import SctpTransport, TcpTransport, UdpTransport
from nodes.wire.policies import LeastUsed, RoundRobin
from sdn import ibe, ibe_resources
from sdn.ibe_resources import PingSummary, aggregate, delay_entry, parse_ping_summary

CONFIG: dict[str, Any] = {
    "name": "ibe-as1", "kind": "ibe", "host": "gw-as1", "domain": "AS1", "addresses": ["10.1.1.1"],
    "registrars": [{"name": "registrar-as1", "host": "reg-as1", "addresses": ["10.1.1.10", "10.1.2.10"],
                    "port": 3863, "enrp_port": 9901}],
    "ibe": {"socket": "/run/vnfpool-testbed/abc.ibe-as1.sock", "handles": ["SF1", "SF2", "SF1"],
            "hosts": {"sf1-as1-1": 12345, "sf1-as1-2": {"pid": 12346}, "late": None},
            "neighbours": {"AS2": "10.255.1.2"}, "poll_interval": 0.5, "probe_interval": 2},
}  # fmt: skip


def pe(pe_id: int, *addresses: str, port: int = 5000, transport: type = SctpTransport,
       policy: Any = None) -> PoolElement:  # fmt: skip
    t = transport(port=port, addresses=tuple(ipaddress.ip_address(a) for a in addresses))
    return PoolElement(pe_id, 0x1234, 5000, t, policy or RoundRobin())


def with_ibe(**changes: Any) -> dict[str, Any]:
    return {**CONFIG, "ibe": {**CONFIG["ibe"], **changes}}


# -- config ---------------------------------------------------------------------------------------


def test_settings_from_the_testbeds_config() -> None:
    s = ibe.settings(CONFIG)
    assert s.domain == "AS1" and s.socket == Path("/run/vnfpool-testbed/abc.ibe-as1.sock")
    assert s.handles == ("SF1", "SF2")  # a repeated handle is asked for once
    assert s.hosts == {"sf1-as1-1": 12345, "sf1-as1-2": 12346, "late": None}
    assert s.neighbours == {"AS2": "10.255.1.2"}
    assert (s.poll_interval, s.probe_interval, s.timeout) == (0.5, 2.0, 2.0)


def test_defaults_and_flags_over_the_config() -> None:
    s = ibe.settings({"domain": "AS2", "ibe": {"socket": "/tmp/x.sock"}})
    assert (s.handles, s.hosts, s.neighbours, s.poll_interval, s.probe_interval) == ((), {}, {}, 1.0, 5.0)
    s = ibe.settings(CONFIG, {"socket": "/tmp/other.sock", "poll_interval": None, "timeout": 0.3})
    assert s.socket == Path("/tmp/other.sock") and s.poll_interval == 0.5 and s.timeout == 0.3


@pytest.mark.parametrize(("config", "message"), [
    ({"ibe": CONFIG["ibe"]}, "domain"), ({**CONFIG, "ibe": []}, '"ibe" must be an object'),
    (with_ibe(socket=None), "ibe.socket"), (with_ibe(socket="/run/" + "x" * 120), "too long"),
    (with_ibe(handles="SF1"), "list"), (with_ibe(handles=["S" * 33]), "1 to 32 bytes"),
    (with_ibe(handles=[""]), "1 to 32 bytes"), (with_ibe(handles=[7]), "1 to 32 bytes"),
    (with_ibe(hosts=["a"]), "map host names"), (with_ibe(hosts={"a": -1}), "positive integer"),
    (with_ibe(hosts={"a": True}), "positive integer"), (with_ibe(hosts={"a": "12"}), "positive integer"),
    (with_ibe(neighbours={"AS2": "gw-as2"}), "ibe.neighbours"),
    (with_ibe(neighbours=["AS2"]), "map domains"), (with_ibe(poll_interval=0), "poll_interval"),
    (with_ibe(probe_interval="often"), "probe_interval must be a number"),
])  # fmt: skip
def test_bad_configs_are_refused_with_what_is_wrong(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ibe.ConfigError, match=message):
        ibe.settings(config)


def test_node_flags_come_from_the_config_file_too(tmp_path: Path) -> None:
    """nodes.node.parse: the spec's options are flags (the testbed's way to pass --backend)."""
    path = tmp_path / "ibe.json"
    path.write_text(json.dumps({**CONFIG, "spec": {"options": {"backend": "tcp", "poll-interval": 0.25}}}))
    args, config = node.parse(ibe.parser(), ["--config", str(path), "--timeout", "1.5"])
    s = ibe.settings(config, {"poll_interval": args.poll_interval, "timeout": args.timeout})
    assert args.backend == "tcp" and args.name == "ibe-as1" and args.local == ["10.1.1.1"]
    assert (s.poll_interval, s.timeout) == (0.25, 1.5)
    options = ibe.pool_user_options(args, config, s.timeout)
    assert [str(r) for r in options.registrars] == ["10.1.1.10,10.1.2.10:3863"]
    assert options.sctp is False and options.request_timeout == 1.5 and options.cache_lifetime == 0


# -- ping -----------------------------------------------------------------------------------------

IPUTILS_OK = """PING 10.255.1.2 (10.255.1.2) 56(84) bytes of data.
--- 10.255.1.2 ping statistics ---
3 packets transmitted, 3 received, 0% packet loss, time 402ms
rtt min/avg/max/mdev = 20.112/20.530/21.004/0.365 ms
"""
IPUTILS_LOSS = """--- 10.255.1.2 ping statistics ---
3 packets transmitted, 2 received, 33.3333% packet loss, time 405ms
rtt min/avg/max/mdev = 20.1/20.2/20.3/0.1 ms
"""
IPUTILS_NONE = """--- 10.255.1.2 ping statistics ---
3 packets transmitted, 0 received, +2 errors, 100% packet loss, time 406ms
"""
IPUTILS_DUP = """3 packets transmitted, 3 received, +1 duplicates, 0% packet loss, time 400ms
rtt min/avg/max/mdev = 1.0/2.0/3.0/0.5 ms
"""
BUSYBOX = """--- 10.0.0.1 ping statistics ---
3 packets transmitted, 3 packets received, 0% packet loss
round-trip min/avg/max = 0.1/0.2/0.3 ms
"""


@pytest.mark.parametrize(("output", "expected"), [
    (IPUTILS_OK, PingSummary(3, 3, 20.53)), (IPUTILS_LOSS, PingSummary(3, 2, 20.2)),
    (IPUTILS_NONE, PingSummary(3, 0, None)), (IPUTILS_DUP, PingSummary(3, 3, 2.0)),
    (BUSYBOX, PingSummary(3, 3, 0.2)), ("ping: connect: Network is unreachable\n", None), ("", None),
])  # fmt: skip
def test_ping_summary(output: str, expected: PingSummary | None) -> None:
    assert parse_ping_summary(output) == expected


def test_delay_entries_halve_the_rtt_and_say_unreachable_plainly() -> None:
    assert delay_entry(PingSummary(3, 3, 20.53), 100.0) == {"delay_ms": 10.265, "rtt_ms": 20.53, "loss": 0.0,
                                                             "measured_at": 100.0}  # fmt: skip
    assert delay_entry(PingSummary(3, 2, 20.2), 1.0)["loss"] == 0.333
    unreachable = {"delay_ms": None, "rtt_ms": None, "loss": 1.0, "measured_at": 1.0}
    assert delay_entry(PingSummary(3, 0, None), 1.0) == unreachable
    assert delay_entry(None, 1.0)["loss"] == 1.0 and PingSummary(0, 0, None).loss == 1.0


def test_ping_argv_is_the_quiet_burst() -> None:
    argv = "ping -n -q -U -c 3 -i 0.2 -W 1 10.255.1.2".split()
    assert ibe_resources.ping_argv("10.255.1.2") == argv


def test_ping_of_a_missing_program_is_an_unreachable_neighbour(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ibe_resources, "ping_argv", lambda *a: ["/nonexistent/ping"])
    entry = asyncio.run(ibe_resources.ping("10.255.1.2"))
    assert entry["delay_ms"] is None and entry["loss"] == 1.0


# -- resources ------------------------------------------------------------------------------------


def fake_process(proc: Path, pid: int, ns: str, ticks: int, rss_pages: int) -> None:
    d = proc / str(pid)
    (d / "ns").mkdir(parents=True, exist_ok=True)
    if not (d / "ns" / "net").is_symlink():
        (d / "ns" / "net").symlink_to(f"net:[{ns}]")
    fields = (
        ["S"] + ["0"] * 10 + [str(ticks), "0"] + ["0"] * 6 + ["1"] + ["0"] * 5
    )  # utime at 11, start at 19
    (d / "stat").write_text(f"{pid} (a (weird) name) {' '.join(fields)}\n")
    (d / "statm").write_text(f"1000 {rss_pages} 10 1 0 100 0\n")


def test_resident_memory_per_namespace(tmp_path: Path) -> None:
    fake_process(tmp_path, 10, "1", 0, 100)
    fake_process(tmp_path, 11, "1", 0, 50)
    fake_process(tmp_path, 12, "2", 0, 7)
    (tmp_path / "self").mkdir()  # not a pid: skipped
    (tmp_path / "13").mkdir()  # a process that exited during the scan
    found = ibe_resources.resident_bytes(["net:[1]", "net:[2]", "net:[3]"], tmp_path)
    page = ibe_resources.PAGE_SIZE
    assert found == {"net:[1]": 150 * page, "net:[2]": 7 * page, "net:[3]": 0}


def test_aggregate_is_the_mean_cpu_and_the_summed_memory() -> None:
    doc = aggregate(
        {"a": 0.5, "b": 0.1}, {"a": 10 * 2**20, "b": 5 * 2**20, "c": 2**20}, ["a", "b", "c"], 4, 9.0, ["d"]
    )
    assert doc["cpu_utilization"] == 0.3 and doc["memory_mb"] == 16.0 and doc["hosts"] == 3
    assert doc["cpu_cores"] == 4 and doc["measured_at"] == 9.0 and doc["unmeasured"] == ["d"]
    assert doc["per_host"]["c"] == {"cpu": None, "memory_mb": 1.0}
    assert aggregate({}, {}, [], 1, 0.0)["cpu_utilization"] is None


def test_host_sampler_leaves_out_its_own_namespace_and_hosts_gone(tmp_path: Path) -> None:
    fake_process(tmp_path, os.getpid(), "own", 0, 1)
    fake_process(tmp_path, 100, "h1", 10, 256)
    fake_process(tmp_path, 101, "h1", 0, 256)
    fake_process(tmp_path, 200, "h2", 0, 512)
    sampler = ibe_resources.HostSampler(
        {"h1": 100, "h2": 200, "gw": os.getpid(), "gone": 999, "late": None}, tmp_path
    )
    first = sampler.sample()
    assert first["cpu_utilization"] is None and first["hosts"] == 2
    assert first["unmeasured"] == ["gone", "gw", "late"]
    assert first["memory_mb"] == round(1024 * ibe_resources.PAGE_SIZE / 2**20, 2)
    fake_process(tmp_path, 100, "h1", 60, 256)  # 50 more ticks in h1
    second = sampler.sample()
    assert second["per_host"]["h1"]["cpu"] > 0 and second["per_host"]["h2"]["cpu"] == 0
    assert second["cpu_utilization"] == pytest.approx(second["per_host"]["h1"]["cpu"] / 2, abs=1e-4)


# -- shaping --------------------------------------------------------------------------------------


def test_pe_json_maps_what_the_registrar_says() -> None:
    assert ibe.pe_json(pe(0x10, "10.1.1.12", "10.1.2.12", port=4000)) == {
        "pe_id": 16, "addresses": ["10.1.1.12", "10.1.2.12"], "port": 4000, "transport": "sctp", "policy": "round-robin"}  # fmt: skip
    assert (
        ibe.pe_json(pe(1, "10.1.1.13", transport=TcpTransport, policy=LeastUsed(load=7)))["transport"]
        == "tcp"
    )
    assert ibe.policy_name(LeastUsed(load=7)) == "least-used"
    assert ibe.transport_name(UdpTransport(port=1, addresses=())) == "udp"


@pytest.mark.parametrize(("resolution", "kind"), [
    (Resolution(b"SF1", (pe(1, "10.0.0.1"),)), "ok"), (Resolution(b"SF1"), "empty"),
    (Resolution(b"SF1", error="UNKNOWN_POOL_HANDLE"), "empty"),
    (Resolution(b"SF1", error="timeout: no answer from a registrar"), "unreachable"),
    (Resolution(b"SF1", error="INVALID_VALUES"), "error"),
])  # fmt: skip
def test_outcome_of_a_resolution(resolution: Resolution, kind: str) -> None:
    assert ibe.outcome(resolution) == kind


def test_pool_listing_is_in_id_order_whatever_the_policy_turned() -> None:
    listing = ibe.pool_listing(Resolution(b"SF1", (pe(9, "10.0.0.9"), pe(3, "10.0.0.3"))))
    assert [p["pe_id"] for p in listing] == [3, 9]


@pytest.mark.parametrize(("body", "message"), [
    (b"{", "must be JSON"), (b"\xff\xfe", "must be JSON"), (b"[1, 2]", "JSON object"),
    (b'{"pe_id": 1}', "pool handle"), (b'{"handle": "SF1"}', "pe_id"),
    (b'{"handle": "SF1", "pe_id": true}', "pe_id"), (b'{"handle": "SF1", "pe_id": -1}', "pe_id"),
    (b'{"handle": "SF1", "pe_id": 4294967296}', "pe_id"), (b'{"handle": "SF1", "pe_id": "0x10"}', "pe_id"),
])  # fmt: skip
def test_bad_reports_say_what_is_wrong(body: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ibe.parse_report(body)


def test_a_good_report() -> None:
    assert ibe.parse_report(b'{"handle": "SF2", "pe_id": 123, "extra": 1}') == ("SF2", 123)


# -- the API over a fake pool user ----------------------------------------------------------------


class FakePoolUser:
    """A registrar in a dict: round-robin per handle; `silent` is a registrar that never answers."""

    def __init__(self, pools: dict[bytes, list[PoolElement]]) -> None:
        self.pools, self.turns, self.reports = pools, dict.fromkeys(pools, 0), []  # type: ignore[var-annotated]
        self.silent = False
        self.broken = False
        self.calls = 0

    async def resolve(self, handle: bytes, items: int | None = None) -> Resolution:
        self.calls += 1
        if self.broken:
            raise RuntimeError("a bug")
        if self.silent:
            return Resolution(handle, error="timeout: no answer from a registrar")
        if handle not in self.pools:
            return Resolution(handle, error="UNKNOWN_POOL_HANDLE")
        pes, k = self.pools[handle], self.turns[handle]
        self.turns[handle] += 1
        turned = pes[k % len(pes) :] + pes[: k % len(pes)] if pes else []
        return Resolution(handle, tuple(turned[: items or len(turned)]))

    def report_unreachable(self, handle: bytes, pe_id: int) -> None:
        self.reports.append((handle, pe_id))


class FakeSampler:
    def __init__(self) -> None:
        self.n = 0

    def sample(self) -> dict[str, Any]:
        self.n += 1
        return aggregate({"h": 0.25} if self.n > 1 else {}, {"h": 2**20}, ["h"], 2, 1.0)


async def fake_ping(address: str) -> dict[str, Any]:
    rtt = None if address == "10.255.9.9" else 20.0
    return delay_entry(PingSummary(3, 0 if rtt is None else 3, rtt), 5.0)


def make_ibe(pu: FakePoolUser, out: io.StringIO | None = None, **changes: Any) -> ibe.Ibe:
    config = ibe.settings(with_ibe(neighbours={"AS2": "10.255.1.2", "AS3": "10.255.9.9"}, poll_interval=0.05,
                                   probe_interval=0.05, timeout=0.3, **changes))  # fmt: skip
    return ibe.Ibe(config, pu, EventLog("ibe-as1", out or io.StringIO()), connected=lambda: not pu.silent,
                   sampler=FakeSampler(), prober=fake_ping)  # type: ignore[arg-type]  # fmt: skip


def default_pu() -> FakePoolUser:
    return FakePoolUser({b"SF1": [pe(7, "10.1.1.12", "10.1.2.12"), pe(3, "10.1.1.11", "10.1.2.11")]})


def run_api(pu: FakePoolUser, test: Callable[[TestClient, ibe.Ibe], Awaitable[None]], *, start: bool = True,
            out: io.StringIO | None = None) -> None:  # fmt: skip
    async def main() -> None:
        state = make_ibe(pu, out)
        tasks = state.start() if start else []
        try:
            async with TestClient(TestServer(ibe.application(state))) as client:
                await test(client, state)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


async def get(client: TestClient, path: str) -> tuple[int, Any]:
    response = await client.get(path)
    assert response.content_type == "application/json", (path, response.content_type)
    return response.status, await response.json()


def test_pools_lists_every_configured_handle() -> None:
    async def test(client: TestClient, state: ibe.Ibe) -> None:
        status, body = await get(client, "/pools")  # may wait for the first poll
        assert status == 200 and body["domain"] == "AS1" and body["registrar"] == "ok"
        assert [p["pe_id"] for p in body["pools"]["SF1"]] == [3, 7] and body["pools"]["SF2"] == []
        assert body["pools"]["SF1"][0] == {"pe_id": 3, "addresses": ["10.1.1.11", "10.1.2.11"], "port": 5000,
                                           "transport": "sctp", "policy": "round-robin"}  # fmt: skip
        assert body["measured_at"] > 0

    run_api(default_pu(), test)


def test_resolve_is_live_and_the_policy_chooses() -> None:
    async def test(client: TestClient, state: ibe.Ibe) -> None:
        first = (await get(client, "/resolve?handle=SF1"))[1]["pe"]["pe_id"]
        second = (await get(client, "/resolve?handle=SF1"))[1]["pe"]["pe_id"]
        assert {first, second} == {3, 7}
        assert await get(client, "/resolve?handle=SF2") == (
            404,
            {"error": "no pool element in pool SF2", "handle": "SF2"},
        )
        for bad in ("/resolve", "/resolve?handle=", "/resolve?handle=" + "x" * 40):
            status, body = await get(client, bad)
            assert status == 400 and "handle" in body["error"]
        state.pu.silent = True  # type: ignore[attr-defined]
        status, body = await get(client, "/resolve?handle=SF1")
        assert status == 503 and "unreachable" in body["error"]

    run_api(default_pu(), test, start=False)


def test_a_silent_registrar_keeps_the_last_pools_and_says_so() -> None:
    out = io.StringIO()

    async def test(client: TestClient, state: ibe.Ibe) -> None:
        await state.poll_pools()
        before = (await get(client, "/pools"))[1]
        state.pu.silent = True  # type: ignore[attr-defined]
        await state.poll_pools()
        status, after = await get(client, "/pools")
        assert (
            status == 200
            and after["pools"] == before["pools"]
            and after["measured_at"] == before["measured_at"]
        )
        assert after["registrar"] == "unreachable"
        assert (await get(client, "/health"))[1]["registrar"] == "unreachable"
        state.pu.silent = False  # type: ignore[attr-defined]
        state.pu.pools[b"SF1"].pop()  # type: ignore[attr-defined]
        await state.poll_pools()
        assert [p["pe_id"] for p in (await get(client, "/pools"))[1]["pools"]["SF1"]] == [7]

    run_api(default_pu(), test, start=False, out=out)
    events = [json.loads(line)["event"] for line in out.getvalue().splitlines()]
    assert events == ["registrar-answering", "pools", "registrar-silent", "registrar-answering", "pools"]


def test_no_first_answer_is_503() -> None:
    pu = default_pu()
    pu.silent = True

    async def test(client: TestClient, state: ibe.Ibe) -> None:
        status, body = await get(client, "/pools")
        assert status == 503 and body["registrar"] == "unreachable"

    run_api(pu, test)


def test_unreachable_reports_go_to_the_pool_user() -> None:
    async def test(client: TestClient, state: ibe.Ibe) -> None:
        response = await client.post("/unreachable", json={"handle": "SF1", "pe_id": 7})
        assert response.status == 204 and state.pu.reports == [(b"SF1", 7)]  # type: ignore[attr-defined]
        for body in (b"", b"{", b"null", b'{"handle": "SF1", "pe_id": "x"}'):
            response = await client.post("/unreachable", data=body)
            assert response.status == 400 and "error" in await response.json()
        response = await client.post("/unreachable", data=b"x" * (ibe.MAX_BODY + 1))
        assert response.status == 413 and "error" in await response.json()
        assert state.pu.reports == [(b"SF1", 7)]  # type: ignore[attr-defined]

    run_api(default_pu(), test, start=False)


def test_resources_delays_and_health() -> None:
    async def test(client: TestClient, state: ibe.Ibe) -> None:
        status, resources = await get(client, "/resources")
        assert status == 200 and resources["cpu_utilization"] == 0.25 and resources["hosts"] == 1
        status, delays = await get(client, "/delays")
        assert status == 200 and delays["AS2"]["delay_ms"] == 10.0 and delays["AS2"]["loss"] == 0.0
        assert delays["AS3"] == {"delay_ms": None, "rtt_ms": None, "loss": 1.0, "measured_at": 5.0}
        status, health = await get(client, "/health")
        assert (
            status == 200
            and health["domain"] == "AS1"
            and health["registrar"] == "ok"
            and health["uptime"] >= 0
        )

    run_api(default_pu(), test)


def test_unknown_paths_methods_and_bugs_are_json_errors() -> None:
    out = io.StringIO()

    async def test(client: TestClient, state: ibe.Ibe) -> None:
        assert (await get(client, "/nope"))[0] == 404
        response = await client.get("/unreachable")
        assert (
            response.status == 405
            and response.headers["Allow"] == "POST"
            and "error" in await response.json()
        )
        response = await client.post("/pools", data=b"{}")
        assert response.status == 405
        state.pu.broken = True  # type: ignore[attr-defined]
        status, body = await get(client, "/resolve?handle=SF1")
        assert status == 500 and body["error"] == "internal error"
        state.pu.broken = False  # type: ignore[attr-defined]
        assert (await get(client, "/resolve?handle=SF1"))[0] == 200  # the server goes on

    run_api(default_pu(), test, start=False, out=out)
    assert '"internal-error"' in out.getvalue()


def test_a_failing_background_round_is_logged_and_the_loop_goes_on() -> None:
    out = io.StringIO()
    pu = default_pu()
    pu.broken = True

    async def test(client: TestClient, state: ibe.Ibe) -> None:
        await asyncio.sleep(0.2)
        calls = pu.calls
        pu.broken = False
        assert (await get(client, "/pools"))[0] == 200 and calls >= 4

    run_api(pu, test, out=out)
    assert '"loop": "pools"' in out.getvalue()


# -- the socket -----------------------------------------------------------------------------------


def serve_and_check(path: Path, check: Callable[[int], Awaitable[None]]) -> None:
    async def main() -> None:
        runner = web.AppRunner(ibe.application(make_ibe(default_pu())), shutdown_timeout=0.5)
        await runner.setup()
        try:
            inode = await ibe_resources.serve_unix(runner, path)
            await check(inode)
        finally:
            await runner.cleanup()

    asyncio.run(main())


def test_a_stale_socket_is_replaced_and_ours_removed_at_exit(tmp_path: Path) -> None:
    path = tmp_path / "run" / "x.ibe-as1.sock"
    path.parent.mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # bound, never listening: what a killed IBE leaves

    async def check(inode: int) -> None:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(b"GET /health HTTP/1.0\r\n\r\n")
        assert b'"domain": "AS1"' in await reader.read()
        writer.close()
        with pytest.raises(ibe_resources.SocketBusy, match="another process"):
            ibe_resources.claim_socket(path)  # a second IBE on the same path
        ibe_resources.release_socket(path, inode + 1)  # not ours: left alone
        assert path.exists()
        ibe_resources.release_socket(path, inode)
        assert not path.exists()

    serve_and_check(path, check)


def test_a_file_that_is_not_a_socket_is_never_removed_and_the_directory_is_made(tmp_path: Path) -> None:
    path = tmp_path / "important.txt"
    path.write_text("keep me")
    with pytest.raises(ibe_resources.SocketBusy, match="not a socket"):
        ibe_resources.claim_socket(path)
    assert path.read_text() == "keep me"
    ibe_resources.claim_socket(tmp_path / "a" / "b" / "ibe.sock")
    assert (tmp_path / "a" / "b").is_dir()
