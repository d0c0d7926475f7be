"""RegistrarTable (nodes/registrars.py): static registrars plus those heard in SERVER_ANNOUNCEs.

RSPLIB (rserpool-wire.md 6 and 8.6): an announce names the registrar by its SCTP transport if it
has one, else by the UDP source address and port; announce entries expire 5 s after the last one.
"""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from nodes.registrars import ANNOUNCE_TIMEOUT, RegistrarAddress, RegistrarTable
from nodes.wire import (
    DecodeError,
    EndpointKeepAlive,
    SctpTransport,
    ServerAnnounce,
    TcpTransport,
    Transport,
    UdpTransport,
)

STATIC = RegistrarAddress(("10.0.0.1",), 3863)
STATIC2 = RegistrarAddress(("10.0.0.2", "10.0.1.2"), 3864)


def announce(server_id: int, *transports: Transport) -> bytes:
    return ServerAnnounce(server_id=server_id, transports=transports).encode()


def sctp(port: int, *addresses: str) -> SctpTransport:
    return SctpTransport(port=port, addresses=tuple(ip_address(a) for a in addresses))


def tcp(port: int, address: str) -> TcpTransport:
    return TcpTransport(port=port, addresses=(ip_address(address),))


def test_announce_with_sctp_transport_names_its_addresses_and_port() -> None:
    table = RegistrarTable()
    entry = table.heard(announce(7, sctp(3999, "10.0.0.7", "10.0.1.7")), "10.0.0.7", 40001, 0.0)
    assert entry == RegistrarAddress(("10.0.0.7", "10.0.1.7"), 3999, 7)
    assert table.candidates(0.0) == [entry]


def test_bare_announce_names_the_udp_source() -> None:
    table = RegistrarTable()
    entry = table.heard(announce(7), "10.0.0.7", 3863, 0.0)
    assert entry == RegistrarAddress(("10.0.0.7",), 3863, 7)


def test_announce_prefers_the_transport_of_the_table_protocol() -> None:
    udp = UdpTransport(port=1, addresses=(ip_address("10.0.0.7"),))
    data = announce(7, tcp(4000, "10.0.0.7"), sctp(3999, "10.0.0.7"), udp)
    source = ("10.0.0.7", 3863, 0.0)
    assert RegistrarTable(sctp=True).heard(data, *source) == RegistrarAddress(("10.0.0.7",), 3999, 7)
    assert RegistrarTable(sctp=False).heard(data, *source) == RegistrarAddress(("10.0.0.7",), 4000, 7)


def test_tcp_transports_of_one_registrar_merge() -> None:
    data = announce(7, tcp(4000, "10.0.0.7"), tcp(4000, "10.0.1.7"), tcp(4000, "10.0.0.7"))
    entry = RegistrarTable(sctp=False).heard(data, "10.0.0.7", 3863, 0.0)
    assert entry == RegistrarAddress(("10.0.0.7", "10.0.1.7"), 4000, 7)


def test_announce_without_a_usable_transport_falls_back_to_the_source() -> None:
    entry = RegistrarTable(sctp=False).heard(announce(7, sctp(3999, "10.0.9.7")), "10.0.0.7", 3863, 0.0)
    assert entry == RegistrarAddress(("10.0.0.7",), 3863, 7)


def test_heard_reports_only_news() -> None:
    table = RegistrarTable()
    assert table.heard(announce(7), "10.0.0.7", 3863, 0.0) is not None
    assert table.heard(announce(7), "10.0.0.7", 3863, 1.0) is None  # same again
    moved = table.heard(announce(7, sctp(3999, "10.0.5.7")), "10.0.0.7", 3863, 2.0)
    assert moved == RegistrarAddress(("10.0.5.7",), 3999, 7)
    assert table.candidates(2.0) == [moved]  # one entry per server id


def test_announce_entry_expires_five_seconds_after_the_last_announce() -> None:
    assert ANNOUNCE_TIMEOUT == 5.0
    table = RegistrarTable()
    table.heard(announce(7), "10.0.0.7", 3863, 10.0)
    table.heard(announce(7), "10.0.0.7", 3863, 12.0)  # refreshes the expiry
    assert len(table.candidates(16.9)) == 1
    assert table.candidates(17.0) == []
    assert table.next(17.5) is None


def test_expired_entry_comes_back_when_heard_again() -> None:
    table = RegistrarTable()
    table.heard(announce(7), "10.0.0.7", 3863, 0.0)
    assert table.candidates(6.0) == []
    assert table.heard(announce(7), "10.0.0.7", 3863, 6.0) is not None
    assert len(table.candidates(6.0)) == 1


def test_rotation_over_static_registrars() -> None:
    table = RegistrarTable((STATIC, STATIC2))
    assert [table.next(0.0) for _ in range(5)] == [STATIC, STATIC2, STATIC, STATIC2, STATIC]


def test_static_registrars_come_first_and_duplicates_of_static_ones_merge() -> None:
    table = RegistrarTable((STATIC, STATIC2))
    heard = table.heard(announce(7, sctp(3863, "10.0.0.1")), "10.0.0.1", 3863, 0.0)  # STATIC announcing
    other = table.heard(announce(8), "10.0.0.8", 3863, 0.0)
    candidates = table.candidates(1.0)
    assert candidates == [STATIC, STATIC2, other]  # the configuration first; STATIC once
    assert heard is not None
    assert [table.next(1.0) for _ in range(4)] == [STATIC, STATIC2, other, STATIC]


def test_rotation_survives_a_shrinking_table() -> None:
    table = RegistrarTable((STATIC,))
    table.heard(announce(8), "10.0.0.8", 3863, 0.0)
    seen = {table.next(1.0), table.next(1.0)}
    assert len(seen) == 2
    assert table.next(10.0) == STATIC  # the announced one expired


def test_empty_table_has_no_next() -> None:
    assert RegistrarTable().next(0.0) is None


@pytest.mark.parametrize(
    "data",
    [b"", b"\x0a\x00\x00\x07xyz", EndpointKeepAlive(server_id=1, pool_handle=b"p").encode()],
)
def test_what_is_not_an_announce_raises(data: bytes) -> None:
    table = RegistrarTable()
    with pytest.raises(DecodeError):
        table.heard(data, "10.0.0.7", 3863, 0.0)
    assert table.candidates(0.0) == []


def test_str_of_an_entry() -> None:
    assert str(STATIC2) == "10.0.0.2,10.0.1.2:3864"


def test_an_announcer_with_ever_new_ids_fills_only_a_bounded_table() -> None:
    from nodes.registrars import MAX_ANNOUNCED

    table = RegistrarTable()
    for server_id in range(1, 10 * MAX_ANNOUNCED):
        table.heard(announce(server_id), f"10.0.{server_id // 250}.{server_id % 250 + 1}", 3863, 0.0)
    assert len(table.announced) == MAX_ANNOUNCED
    table.heard(announce(99999), "10.9.9.9", 3863, 10.0)  # the others went quiet: room again
    assert set(table.announced) == {99999}
