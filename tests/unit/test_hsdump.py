"""The handlespace dump (nodes/registrar/hsdump.py): the sans-I/O core, its rendering, the CLI.

The registrar is played by hand: the test builds its PRESENCE, LIST_RESPONSE and
HANDLE_TABLE_RESPONSEs as real bytes and decodes what the core sends back.  The runner is
driven over loopback TCP against a scripted registrar, which needs no SCTP.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
from collections.abc import Sequence
from ipaddress import ip_address

import pytest
from rich.console import Console

from nodes import transport
from nodes.registrar import hsdump_cli
from nodes.registrar.hsdump import (
    DumpError,
    DumpResult,
    DumpTimeout,
    HandlespaceDump,
    dump,
    random_server_id,
)
from nodes.wire import (
    CauseCode,
    EnrpError,
    EnrpMessage,
    ErrorCause,
    HandleTableRequest,
    HandleTableResponse,
    HandleUpdate,
    ListRequest,
    ListResponse,
    Message,
    PoolElement,
    PoolEntry,
    Presence,
    Protocol,
    SctpTransport,
    ServerInformation,
    TcpTransport,
    TransportUse,
    UpdateAction,
    decode,
)
from nodes.wire import policies as P

ENRP = Protocol.ENRP.ppid
OWN, REG, OTHER, PEER = 0x0D0D0D0D, 0x11111111, 0x22222222, 0x33333333
MORE, REJECT = HandleTableResponse.FLAGS["more_to_send"], HandleTableResponse.FLAGS["reject"]


# ------------------------------------------------------------------ helpers


def pe(ident: int, home: int = REG, policy: P.Policy | None = None, port: int = 7000) -> PoolElement:
    user = SctpTransport(
        port=port, addresses=(ip_address(f"10.1.1.{ident % 250 + 1}"), ip_address("10.1.2.1"))
    )
    registrator = SctpTransport(port=40000 + ident, addresses=(ip_address(f"10.1.1.{ident % 250 + 1}"),))
    return PoolElement(ident, home, 30000, user, policy or P.RoundRobin(), registrator)


def table(*entries: tuple[bytes, Sequence[PoolElement]], flags: int = 0, receiver: int = OWN) -> bytes:
    return HandleTableResponse(
        sender_id=REG, receiver_id=receiver, flags=flags,
        entries=tuple(PoolEntry(handle, tuple(pes)) for handle, pes in entries),
    ).encode()  # fmt: skip


def presence(checksum: int = 0xFFFF, reply_required: bool = True) -> bytes:
    info = ServerInformation(REG, SctpTransport(port=9901, addresses=(ip_address("10.1.1.10"),)))
    flags = Presence.FLAGS["reply_required"] if reply_required else 0
    return Presence(sender_id=REG, receiver_id=OWN, flags=flags, checksum=checksum, server_info=info).encode()


def peers(*ids: int, flags: int = 0) -> bytes:
    servers = tuple(
        ServerInformation(i, SctpTransport(port=9901, addresses=(ip_address("10.2.1.10"),))) for i in ids
    )
    return ListResponse(sender_id=REG, receiver_id=OWN, servers=servers, flags=flags).encode()


def wire(messages: Sequence[EnrpMessage]) -> list[Message]:
    """What the core sent, after a trip over the wire."""
    return [decode(m.encode(), Protocol.ENRP) for m in messages]


def reference_checksum(pairs: Sequence[tuple[bytes, int]]) -> int:
    """RFC 1071 over handle (padded to even length) + PE id: written apart from the codec's."""
    data = b"".join(handle + b"\0" * (len(handle) % 2) + ident.to_bytes(4, "big") for handle, ident in pairs)
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total > 0xFFFF:
        total = (total >> 16) + (total & 0xFFFF)
    return 0xFFFF - total


def started(**kwargs: object) -> HandlespaceDump:
    core = HandlespaceDump(OWN, **kwargs)  # type: ignore[arg-type]
    core.start()
    return core


# ------------------------------------------------------------------ the first messages


def test_start_introduces_itself_then_asks_for_list_and_table() -> None:
    core = HandlespaceDump(OWN, addresses=("10.1.1.20", "10.1.2.20"))
    hello, ask_list, ask_table = wire(core.start())
    assert isinstance(hello, Presence) and hello.has_flag("reply_required")
    assert (hello.sender_id, hello.receiver_id, hello.checksum) == (OWN, 0, 0xFFFF)
    assert hello.server_info == ServerInformation(
        OWN, SctpTransport(port=0, addresses=(ip_address("10.1.1.20"), ip_address("10.1.2.20")))
    )
    assert isinstance(ask_list, ListRequest) and (ask_list.sender_id, ask_list.receiver_id) == (OWN, 0)
    assert isinstance(ask_table, HandleTableRequest) and (ask_table.sender_id, ask_table.receiver_id) == (
        OWN,
        0,
    )
    assert ask_table.flags == 0 and not ask_table.has_flag("own_children_only")  # the whole handlespace


def test_over_tcp_the_presence_carries_a_tcp_transport_with_one_address() -> None:
    hello = wire(HandlespaceDump(OWN, addresses=("0.0.0.0", "10.1.1.20", "10.1.2.20"), sctp=False).start())[0]
    assert isinstance(hello, Presence)
    assert hello.server_info == ServerInformation(
        OWN, TcpTransport(port=0, addresses=(ip_address("10.1.1.20"),))
    )


def test_without_usable_local_addresses_the_presence_has_no_server_information() -> None:
    hello = wire(HandlespaceDump(OWN, addresses=("::", "a-name")).start())[0]
    assert isinstance(hello, Presence) and hello.server_info is None


@pytest.mark.parametrize("bad", [0, -1, 1 << 32])
def test_own_id_is_a_nonzero_32_bit_number(bad: int) -> None:
    with pytest.raises(ValueError):
        HandlespaceDump(bad)


def test_random_server_ids_are_nonzero_32_bit() -> None:
    ids = {random_server_id() for _ in range(200)}
    assert all(0 < i < 1 << 32 for i in ids) and len(ids) > 190


# ------------------------------------------------------------------ a whole dump


def test_dump_over_several_responses_merges_pools_and_pes() -> None:
    a1, a2, a3 = pe(1), pe(2, home=OTHER), pe(3, policy=P.RoundRobin())
    a1_again = pe(1, port=7777)  # sent again in a later response: the later copy wins
    b1, b2 = pe(0x10, policy=P.WeightedRoundRobin(3)), pe(0x11, home=OTHER, policy=P.WeightedRoundRobin(1))
    c1 = pe(0x20, home=PEER, policy=P.LeastUsedDpf(load=P.load_value(0.25), load_dpf=0, distance=12))
    expected_own = [(b"EchoPool", 1), (b"EchoPool", 3), (b"CalcPool", 0x10)]

    core = HandlespaceDump(OWN)
    core.start()
    (reply,) = wire(core.receive(presence(checksum=reference_checksum(expected_own)), ENRP))
    assert isinstance(reply, Presence) and not reply.has_flag("reply_required")  # answered, not asked again
    assert (reply.sender_id, reply.receiver_id, reply.checksum) == (OWN, REG, 0xFFFF)
    assert core.receive(peers(OTHER, PEER), ENRP) == []

    (more,) = wire(core.receive(table((b"EchoPool", [a1, a2]), (b"CalcPool", [b1]), flags=MORE), ENRP))
    assert isinstance(more, HandleTableRequest) and more.flags == 0
    assert (more.sender_id, more.receiver_id) == (OWN, REG)  # the registrar's id, learnt from it
    (more,) = wire(core.receive(table((b"CalcPool", [b2]), (b"EchoPool", [a3, a1_again]), flags=MORE), ENRP))
    assert isinstance(more, HandleTableRequest) and more.receiver_id == REG
    assert not core.finished
    assert core.receive(table((b"SF3", [c1])), ENRP) == []  # no M flag: the last one
    assert core.finished and core.error is None

    result = core.result()
    assert result.registrar_id == REG and result.own_id == OWN and result.responses == 3
    assert [(p.handle, [e.identifier for e in p.pool_elements]) for p in result.pools] == [
        (b"EchoPool", [1, 2, 3]), (b"CalcPool", [0x10, 0x11]), (b"SF3", [0x20]),
    ]  # fmt: skip
    assert result.pools[0].pool_elements[0] == a1_again
    assert [p.policy_name for p in result.pools] == ["RR", "WRR", "LU-DPF"]
    assert result.pe_count == 6
    assert result.peers is not None and [s.server_id for s in result.peers] == [OTHER, PEER]
    assert result.presence_checksum == reference_checksum(expected_own)
    assert result.registrar_info is not None and result.registrar_info.server_id == REG
    assert result.checksums() == {
        REG: reference_checksum(expected_own),
        OTHER: reference_checksum([(b"EchoPool", 2), (b"CalcPool", 0x11)]),
        PEER: reference_checksum([(b"SF3", 0x20)]),
    }


def test_reference_checksum_matches_rsplib_example() -> None:
    assert reference_checksum([(b"EchoPool", 0x12345678)]) == 0x29A5
    assert reference_checksum([]) == 0xFFFF


def test_registrar_id_is_learnt_from_a_table_response_without_presence() -> None:
    core = started()
    (more,) = wire(core.receive(table((b"P", [pe(1)]), flags=MORE), ENRP))
    assert isinstance(more, HandleTableRequest) and more.receiver_id == REG
    core.receive(table((b"P", [pe(2)])), ENRP)
    result = core.result()
    assert (
        core.finished
        and result.registrar_id == REG
        and result.peers is None
        and result.presence_checksum is None
    )


def test_an_empty_handlespace_is_one_empty_response() -> None:
    core = started()
    core.receive(table(), ENRP)
    assert core.finished and core.error is None
    assert core.result().pools == () and core.result().checksums() == {}


def test_a_rejected_list_response_leaves_the_peers_unknown() -> None:
    core = started()
    core.receive(peers(OTHER, flags=ListResponse.FLAGS["reject"]), ENRP)
    assert core.result().peers is None and not core.finished


def test_requests_of_the_registrar_get_empty_or_rejecting_answers() -> None:
    """It may take us for a new peer and ask for our tables: we know nobody, and a handle table
    request is rejected (R flag), so that a starting registrar never takes the tool for its mentor."""
    core = started()
    (answer,) = wire(core.receive(ListRequest(sender_id=REG, receiver_id=OWN).encode(), ENRP))
    assert (
        isinstance(answer, ListResponse)
        and answer.servers == ()
        and (answer.sender_id, answer.receiver_id) == (OWN, REG)
    )
    (answer,) = wire(core.receive(HandleTableRequest(sender_id=REG, receiver_id=OWN).encode(), ENRP))
    assert isinstance(answer, HandleTableResponse) and answer.entries == () and answer.has_flag("reject")
    assert answer.receiver_id == REG
    assert core.receive(presence(reply_required=False), ENRP) == []  # a heartbeat: nothing to answer


def test_handle_updates_are_ignored() -> None:
    core = started()
    update = HandleUpdate(sender_id=REG, receiver_id=OWN, update_action=UpdateAction.ADD_PE,
                          pool_handle=b"P", pool_element=pe(9))  # fmt: skip
    assert core.receive(update.encode(), ENRP) == []
    assert core.result().pools == () and core.result().ignored == 1


def test_messages_for_another_receiver_and_our_own_are_ignored() -> None:
    core = started()
    assert core.receive(table((b"P", [pe(1)]), receiver=OTHER), ENRP) == []
    looped = HandleTableResponse(sender_id=OWN, receiver_id=0, entries=(PoolEntry(b"P", (pe(2),)),)).encode()
    assert core.receive(looped, ENRP) == []
    assert not core.finished and core.result().pools == () and core.result().ignored == 2
    assert core.registrar_id is None  # not learnt from a message that was not for us
    core.receive(table((b"P", [pe(3)]), receiver=0), ENRP)  # receiver 0: for everybody, us too
    assert core.finished and [e.identifier for e in core.result().pools[0].pool_elements] == [3]


# ------------------------------------------------------------------ failures


def test_a_rejected_table_request_ends_the_dump() -> None:
    core = started()
    core.receive(table((b"P", [pe(1)]), flags=MORE), ENRP)
    assert core.receive(table(flags=REJECT), ENRP) == []
    assert (
        core.finished and core.error is not None and "rejected" in core.error and "0x11111111" in core.error
    )
    assert core.receive(table((b"P", [pe(2)])), ENRP) == []  # nothing more is taken in
    assert core.result().responses == 1


def test_an_enrp_error_ends_the_dump_naming_its_causes() -> None:
    core = started()
    error = EnrpError(
        sender_id=REG,
        receiver_id=OWN,
        error=(ErrorCause(CauseCode.UNRECOGNIZED_MESSAGE, b"\x02\x00\x00\x0c"),),
    )
    assert core.receive(error.encode(), ENRP) == []
    assert core.finished and core.error is not None
    assert "ENRP_ERROR" in core.error and "UNRECOGNIZED_MESSAGE" in core.error


@pytest.mark.parametrize(
    "data",
    [b"\x03\x00", bytes.fromhex("0300000c" "11111111"), bytes.fromhex("ff00000c" "11111111" "0d0d0d0d")],
    ids=["truncated header", "length disagrees", "unknown type"],
)
def test_a_malformed_message_ends_the_dump(data: bytes) -> None:
    core = started()
    assert core.receive(data, ENRP) == []
    assert core.finished and core.error is not None and "malformed" in core.error and "at byte" in core.error


def test_a_message_of_another_protocol_ends_the_dump() -> None:
    core = started()
    core.receive(table(), Protocol.ASAP.ppid)
    assert core.finished and core.error is not None and "PPID 11" in core.error


# ------------------------------------------------------------------ rendering


def sample_result() -> DumpResult:
    core = started()
    own = [(b"EchoPool", 1)]
    core.receive(presence(checksum=reference_checksum(own)), ENRP)
    core.receive(peers(OTHER), ENRP)
    user = TcpTransport(
        port=80, addresses=(ip_address("fd00::2"),), transport_use=TransportUse.DATA_PLUS_CONTROL
    )
    tcp = PoolElement(2, OTHER, 15000, user, P.LeastUsed(load=P.load_value(0.5)))
    core.receive(table((b"EchoPool", [pe(1)]), (b"[bold]Pool", [tcp])), ENRP)
    return dataclasses.replace(core.result(), endpoint=(("10.1.1.10",), 9901))


def test_json_document() -> None:
    doc = json.loads(json.dumps(hsdump_cli.plain(sample_result())))
    assert doc["registrar"] == {
        "server_id": "0x11111111", "endpoint": {"addresses": ["10.1.1.10"], "port": 9901},
        "transport": {"protocol": "sctp", "addresses": ["10.1.1.10"], "port": 9901, "transport_use": "DATA_ONLY"},
        "presence_checksum": f"0x{reference_checksum([(b'EchoPool', 1)]):04x}", "presence_checksum_matches": True,
    }  # fmt: skip
    assert (doc["own_id"], doc["responses"], doc["pe_count"], doc["ignored"]) == ("0x0d0d0d0d", 1, 2, 0)
    assert doc["peers"] == [{"server_id": "0x22222222", "transport": {
        "protocol": "sctp", "addresses": ["10.2.1.10"], "port": 9901, "transport_use": "DATA_ONLY"}}]  # fmt: skip
    assert doc["checksums"] == {
        "0x11111111": f"0x{reference_checksum([(b'EchoPool', 1)]):04x}",
        "0x22222222": f"0x{reference_checksum([(b'[bold]Pool', 2)]):04x}",
    }
    echo, other = doc["pools"]
    assert (echo["handle"], echo["policy"], other["handle"], other["policy"]) == (
        "EchoPool",
        "RR",
        "[bold]Pool",
        "LU",
    )
    assert echo["pool_elements"][0] == {
        "pe_id": "0x00000001", "home": "0x11111111", "registration_life_ms": 30000,
        "user_transport": {"protocol": "sctp", "addresses": ["10.1.1.2", "10.1.2.1"], "port": 7000, "transport_use": "DATA_ONLY"},
        "registrator_transport": {"protocol": "sctp", "addresses": ["10.1.1.2"], "port": 40001, "transport_use": "DATA_ONLY"},
        "policy": "RR", "policy_values": {},
    }  # fmt: skip
    tcp = other["pool_elements"][0]
    assert tcp["policy_values"] == {"load": P.load_value(0.5)} and tcp["registrator_transport"] is None
    assert tcp["user_transport"] == {
        "protocol": "tcp",
        "addresses": ["fd00::2"],
        "port": 80,
        "transport_use": "DATA_PLUS_CONTROL",
    }


def test_text_tables() -> None:
    out = io.StringIO()
    hsdump_cli.render_text(sample_result(), Console(file=out, width=200, color_system=None))
    text = out.getvalue()
    assert "Registrar 0x11111111 at 10.1.1.10:9901: 2 pool(s), 2 PE(s) in 1 HANDLE_TABLE_RESPONSE(s)" in text
    assert "EchoPool" in text and "[bold]Pool" in text  # a handle is text, never rich markup
    assert "0x11111111 *" in text and "sctp 10.1.1.2,10.1.2.1:7000" in text and "sctp 10.1.1.2:40001" in text
    assert "tcp [fd00::2]:80 data+ctrl" in text and "load=50.0%" in text and "15 s" in text
    assert "0x22222222" in text and "sctp 10.2.1.10:9901" in text  # the peer
    assert f"0x{reference_checksum([(b'EchoPool', 1)]):04x}" in text and "agrees" in text


def test_text_of_an_empty_dump_without_peers() -> None:
    core = started()
    core.receive(table(), ENRP)
    out = io.StringIO()
    hsdump_cli.render_text(core.result(), Console(file=out, width=120, color_system=None))
    assert "The handlespace is empty." in out.getvalue() and "Peers: no LIST_RESPONSE" in out.getvalue()


# ------------------------------------------------------------------ command line


def test_cli_exit_codes_and_output(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[tuple[object, ...]] = []
    outcome: list[object] = [sample_result()]

    async def fake_dump(addresses: Sequence[str], port: int, **kwargs: object) -> DumpResult:
        calls.append((tuple(addresses), port, kwargs["backend"], kwargs["local"], kwargs["timeout"]))
        if isinstance(outcome[0], Exception):
            raise outcome[0]
        return outcome[0]  # type: ignore[return-value]

    monkeypatch.setattr(hsdump_cli, "dump", fake_dump)
    assert (
        hsdump_cli.main(["10.1.1.10,10.1.2.10:9911", "--json", "--backend", "tcp", "--local", "10.1.1.20"])
        == 0
    )
    assert calls[-1] == (("10.1.1.10", "10.1.2.10"), 9911, "tcp", ("10.1.1.20",), 5.0)
    assert json.loads(capsys.readouterr().out)["registrar"]["server_id"] == "0x11111111"

    assert hsdump_cli.main(["10.1.1.10", "--port", "9999", "--timeout", "0.5"]) == 0
    _, port, _, _, timeout = calls[-1]
    assert (port, timeout) == (9999, 0.5)
    assert "Handlespace" in capsys.readouterr().out

    outcome[0] = DumpTimeout("no complete answer")
    assert hsdump_cli.main(["10.1.1.10", "--json"]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"error": "no complete answer", "timeout": True}
    assert "hsdump: no complete answer" in captured.err

    outcome[0] = DumpError("registrar 0x11111111 sent an ENRP_ERROR")
    assert hsdump_cli.main(["10.1.1.10"]) == 1
    assert "ENRP_ERROR" in capsys.readouterr().err


def test_cli_refuses_a_bad_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        hsdump_cli.main(["10.1.1.10:99999"])
    assert exit_info.value.code == 2 and "expected ADDR" in capsys.readouterr().err


# ------------------------------------------------------------------ the runner, over loopback TCP


Scripted = tuple[transport.Listener, int, list[Message], "asyncio.Task[None]"]


async def scripted_registrar(answers: bool) -> Scripted:
    """A registrar on loopback TCP that answers the dump's requests (or, silent, none);
    the list fills with what it receives."""
    listener = await transport.listen(["127.0.0.1"], 0, backend="tcp", ppid=ENRP)
    port = listener.server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    got: list[Message] = []

    async def receive(assoc: transport.Association, count: int) -> None:
        for _ in range(count):
            got.append(decode((await assoc.receive()).data, Protocol.ENRP))

    async def serve() -> None:
        assoc = await listener.accept()
        await receive(assoc, 3)
        if answers:
            for data in (presence(), peers(OTHER), table((b"P", [pe(1)]), flags=MORE)):
                await assoc.send(data, ENRP)
            await receive(assoc, 2)  # the reply to its presence, the next table request
            await assoc.send(table((b"P", [pe(2)])), ENRP)
        await asyncio.sleep(30)

    return listener, port, got, asyncio.get_running_loop().create_task(serve())


def test_dump_runs_the_exchange_over_an_association() -> None:
    async def scenario() -> tuple[DumpResult, int, list[Message]]:
        listener, port, got, server = await scripted_registrar(answers=True)
        try:
            return await dump(["127.0.0.1"], port, backend="tcp", timeout=5.0, own_id=OWN), port, got
        finally:
            server.cancel()
            await listener.close()

    result, port, got = asyncio.run(scenario())
    assert result.registrar_id == REG and result.responses == 2 and result.endpoint == (("127.0.0.1",), port)
    assert [e.identifier for e in result.pools[0].pool_elements] == [1, 2]
    assert result.peers is not None and [p.server_id for p in result.peers] == [OTHER]
    assert [type(m).__name__ for m in got] == [
        "Presence", "ListRequest", "HandleTableRequest", "Presence", "HandleTableRequest",
    ]  # fmt: skip
    assert all(isinstance(m, EnrpMessage) and m.sender_id == OWN for m in got)
    assert [m.receiver_id for m in got] == [0, 0, 0, REG, REG]  # type: ignore[attr-defined]


def test_dump_of_a_silent_registrar_times_out_saying_how_far_it_got() -> None:
    async def scenario() -> str:
        listener, port, _, server = await scripted_registrar(answers=False)
        try:
            with pytest.raises(DumpTimeout) as info:
                await dump(["127.0.0.1"], port, backend="tcp", timeout=0.5, own_id=OWN)
            return str(info.value)
        finally:
            server.cancel()
            await listener.close()

    message = asyncio.run(scenario())
    assert "in 0.5 s" in message and "no PRESENCE" in message and "0 HANDLE_TABLE_RESPONSE(s)" in message


def test_dump_of_nobody_is_a_clear_connect_error() -> None:
    async def scenario() -> None:
        listener = await transport.listen(["127.0.0.1"], 0, backend="tcp")
        port = listener.server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        await listener.close()  # a port that nobody listens on now
        await dump(["127.0.0.1"], port, backend="tcp", timeout=2.0)

    with pytest.raises(DumpError, match="cannot connect to 127.0.0.1:"):
        asyncio.run(scenario())


def test_presence_checksum_against_the_dump() -> None:
    """A registrar owning nothing says 0xffff; a checksum that does not fit is flagged."""
    core = started()
    core.receive(presence(checksum=0xFFFF), ENRP)
    core.receive(table((b"P", [pe(1, home=OTHER)])), ENRP)
    assert hsdump_cli.plain(core.result())["registrar"]["presence_checksum_matches"] is True

    core = started()
    core.receive(presence(checksum=0x1234), ENRP)
    core.receive(table((b"P", [pe(1)])), ENRP)
    assert hsdump_cli.plain(core.result())["registrar"]["presence_checksum_matches"] is False
    out = io.StringIO()
    hsdump_cli.render_text(core.result(), Console(file=out, width=160, color_system=None))
    assert "0x1234, DISAGREES" in out.getvalue()
