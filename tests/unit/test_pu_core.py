"""PoolUserCore (nodes/pu/core.py): handle resolution through a registrar, failure reports, cache.

The registrar is played by hand: the test decodes the HANDLE_RESOLUTIONs the core sends and
answers with real HANDLE_RESOLUTION_RESPONSE bytes.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from ipaddress import ip_address

import pytest

from nodes.pu.core import PoolUserCore, PoolUserOptions, Resolution
from nodes.registrars import RegistrarAddress
from nodes.sansio import Action, CancelTimer, Result
from nodes.wire import (
    CauseCode,
    EndpointUnreachable,
    ErrorCause,
    HandleResolution,
    HandleResolutionResponse,
    PoolElement,
    Protocol,
    SctpTransport,
)
from nodes.wire import policies as P
from tests.actions import connects, sent, started

ASAP = Protocol.ASAP.ppid
H1, H2 = b"EchoPool", b"CalcPool"
REG = RegistrarAddress(("10.0.0.1",), 3863)
REG2 = RegistrarAddress(("10.0.0.2",), 3863)


# ------------------------------------------------------------------ helpers


def make_core(**overrides: object) -> PoolUserCore:
    options: dict[str, object] = {"registrars": (REG,), "request_timeout": 2.0, "retry_delay": 0.25}
    options.update(overrides)
    return PoolUserCore(PoolUserOptions(**options))  # type: ignore[arg-type]


def pe(ident: int, port: int = 7000) -> PoolElement:
    transport = SctpTransport(port=port, addresses=(ip_address(f"10.0.1.{ident % 250 + 1}"),))
    return PoolElement(ident, 0xAAAA, 30000, transport, P.RoundRobin())






def results(actions: Sequence[Action]) -> dict[Hashable, Resolution]:
    return {a.token: a.value for a in actions if isinstance(a, Result)}




def answer(core: PoolUserCore, assoc: int, handle: bytes, *pes: PoolElement, now: float = 1.0,
           error: int | None = None) -> list[Action]:  # fmt: skip
    response = HandleResolutionResponse(
        pool_handle=handle,
        policy=pes[0].policy if pes else None,
        pool_elements=pes,
        error=(ErrorCause(error),) if error is not None else None,
    )
    return core.receive(assoc, response.encode(), ASAP, now)


def connected(core: PoolUserCore, assoc: int = 1, now: float = 0.0) -> list[Action]:
    """Start and bring the registrar association up."""
    (connect,) = connects(core.start(now))
    return core.association_up(assoc, now, key=connect.key, peer_addresses=connect.addresses)


# ------------------------------------------------------------------ resolution


def test_resolve_while_unconnected_connects_then_asks() -> None:
    core = make_core()
    actions = core.resolve("t1", H1, 5, 0.0)
    (connect,) = connects(actions)
    assert (connect.addresses, connect.port) == (REG.addresses, REG.port)
    assert started(actions) == {("resolution-timeout", "t1"): 2.0}
    assert sent(actions) == []

    up = core.association_up(4, 0.1, key=connect.key)
    (request,) = sent(up, 4)
    assert isinstance(request, HandleResolution)
    assert (request.pool_handle, request.items) == (H1, 5)

    done = answer(core, 4, H1, pe(1), pe(2))
    resolution = results(done)["t1"]
    assert resolution.pool_handle == H1
    assert [p.identifier for p in resolution.pool_elements] == [1, 2]
    assert resolution.policy == P.RoundRobin()
    assert resolution.error is None and not resolution.cached
    assert CancelTimer(("resolution-timeout", "t1")) in done


def test_resolve_while_connected_asks_at_once_without_items_option() -> None:
    core = make_core()
    connected(core, 1)
    actions = core.resolve("t", H1, None, 0.5)
    assert not connects(actions)
    (request,) = sent(actions, 1)
    assert isinstance(request, HandleResolution) and request.items is None


def test_two_pending_requests_of_different_handles_are_matched() -> None:
    core = make_core()
    actions = core.resolve("echo", H1, None, 0.0) + core.resolve("calc", H2, None, 0.0)
    assert len(connects(actions)) == 1  # one registrar association for both
    (connect,) = connects(actions)
    up = core.association_up(1, 0.1, key=connect.key)
    assert [m.pool_handle for m in sent(up, 1)] == [H1, H2]  # type: ignore[attr-defined]

    first = results(answer(core, 1, H1, pe(1)))
    second = results(answer(core, 1, H2, pe(2), pe(3)))
    assert list(first) == ["echo"] and [p.identifier for p in first["echo"].pool_elements] == [1]
    assert list(second) == ["calc"] and [p.identifier for p in second["calc"].pool_elements] == [2, 3]
    assert not core.pending


def test_two_requests_of_one_handle_are_answered_in_order() -> None:
    core = make_core()
    connected(core, 1)
    core.resolve("a", H1, None, 0.1)
    core.resolve("b", H1, None, 0.1)
    assert list(results(answer(core, 1, H1, pe(1)))) == ["a"]
    assert list(results(answer(core, 1, H1, pe(2)))) == ["b"]


def test_error_response_is_a_result_with_the_cause() -> None:
    core = make_core()
    connected(core, 1)
    core.resolve("t", b"Nowhere", None, 0.1)
    resolution = results(answer(core, 1, b"Nowhere", error=CauseCode.UNKNOWN_POOL_HANDLE))["t"]
    assert resolution.pool_elements == ()
    assert resolution.error is not None and "UNKNOWN_POOL_HANDLE" in resolution.error


def test_unexpected_response_produces_no_result() -> None:
    core = make_core()
    connected(core, 1)
    assert results(answer(core, 1, H1, pe(1))) == {}


def test_timeout_gives_an_error_result_and_a_late_answer_is_dropped() -> None:
    core = make_core()
    connected(core, 1)
    core.resolve("t", H1, None, 0.0)
    resolution = results(core.timer(("resolution-timeout", "t"), 2.0))["t"]
    assert resolution.pool_handle == H1
    assert resolution.error is not None and resolution.pool_elements == ()
    assert not core.pending
    assert results(answer(core, 1, H1, pe(1), now=2.5)) == {}


def test_timeout_of_a_request_waiting_for_a_registrar() -> None:
    core = make_core(registrars=())
    actions = core.resolve("t", H1, None, 0.0)
    assert not connects(actions)
    assert results(core.timer(("resolution-timeout", "t"), 2.0))["t"].error is not None


# ------------------------------------------------------------------ failure reports and cache


def test_report_unreachable_is_sent_and_drops_the_pe_from_the_cache() -> None:
    core = make_core(cache_lifetime=30.0)
    connected(core, 1)
    core.resolve("t", H1, None, 0.0)
    answer(core, 1, H1, pe(1), pe(2), pe(3), now=0.1)

    cached = core.resolve("again", H1, None, 1.0)
    assert sent(cached) == []  # served from the cache
    hit = results(cached)["again"]
    assert hit.cached and [p.identifier for p in hit.pool_elements] == [1, 2, 3]

    actions = core.report_unreachable(H1, 2, 2.0)
    (report,) = sent(actions, 1)
    assert isinstance(report, EndpointUnreachable)
    assert (report.pool_handle, report.pe_id) == (H1, 2)

    after = results(core.resolve("after", H1, None, 3.0))["after"]
    assert [p.identifier for p in after.pool_elements] == [1, 3]


def test_cache_expires() -> None:
    core = make_core(cache_lifetime=5.0)
    connected(core, 1)
    core.resolve("t", H1, None, 0.0)
    answer(core, 1, H1, pe(1), now=0.0)
    assert results(core.resolve("in", H1, None, 4.9))["in"].cached
    late = core.resolve("late", H1, None, 5.1)
    assert results(late) == {}
    assert [m.pool_handle for m in sent(late, 1)] == [H1]  # type: ignore[attr-defined]


def test_without_cache_every_resolution_asks() -> None:
    core = make_core(cache_lifetime=0.0)
    connected(core, 1)
    core.resolve("t", H1, None, 0.0)
    answer(core, 1, H1, pe(1), now=0.0)
    assert len(sent(core.resolve("u", H1, None, 0.1), 1)) == 1


def test_report_without_registrar_waits_for_one() -> None:
    core = make_core()
    (connect,) = connects(core.start(0.0))
    assert sent(core.report_unreachable(H1, 9, 0.1)) == []
    up = core.association_up(1, 0.2, key=connect.key)
    (report,) = sent(up, 1)
    assert isinstance(report, EndpointUnreachable) and report.pe_id == 9


# ------------------------------------------------------------------ losing the registrar


def test_pending_request_is_resent_to_the_next_registrar() -> None:
    core = make_core(registrars=(REG, REG2))
    connected(core, 1)
    assert len(sent(core.resolve("t", H1, 2, 0.1), 1)) == 1
    lost = core.association_down(1, 0.5)
    (connect,) = connects(lost)
    assert connect.addresses == REG2.addresses
    up = core.association_up(2, 0.6, key=connect.key)
    (request,) = sent(up, 2)
    assert isinstance(request, HandleResolution) and (request.pool_handle, request.items) == (H1, 2)
    assert [p.identifier for p in results(answer(core, 2, H1, pe(4)))["t"].pool_elements] == [4]


def test_connect_failure_retries_after_the_delay() -> None:
    core = make_core(registrars=(REG, REG2))
    (first,) = connects(core.resolve("t", H1, None, 0.0))
    actions = core.connect_failed(first.key, "refused", 0.1)
    assert started(actions) == {("hunt",): 0.25}
    (second,) = connects(core.timer(("hunt",), 0.35))
    assert second.addresses == REG2.addresses


def test_announce_heard_with_a_waiting_request_connects() -> None:
    from nodes.wire import ServerAnnounce

    core = make_core(registrars=())
    assert not connects(core.resolve("t", H1, None, 0.0))
    data = ServerAnnounce(server_id=7).encode()
    (connect,) = connects(core.datagram(data, "10.0.0.9", 3863, "eth0", 0.1))
    assert (connect.addresses, connect.port) == (("10.0.0.9",), 3863)


@pytest.mark.parametrize("data", [b"", b"\x06\x00\x00\x05x"])
def test_malformed_message_from_the_registrar_is_not_fatal(data: bytes) -> None:
    core = make_core()
    connected(core, 1)
    core.resolve("t", H1, None, 0.0)
    assert results(core.receive(1, data, ASAP, 0.1)) == {}
    assert len(core.pending) == 1


def test_a_late_answer_does_not_go_to_the_next_request_of_the_same_handle() -> None:
    """Requests and answers pair up by order: the answer to one that timed out must be dropped,
    or every later request of that handle gets the answer meant for the one before it."""
    core = make_core()
    connected(core, 1)
    core.resolve("old", H1, None, 0.0)
    core.timer(("resolution-timeout", "old"), 3.0)
    core.resolve("new", H1, None, 3.1)
    assert results(answer(core, 1, H1, pe(1), now=3.2)) == {}  # the late one, for "old"
    fresh = results(answer(core, 1, H1, pe(2), now=3.3))["new"]
    assert [p.identifier for p in fresh.pool_elements] == [2]
