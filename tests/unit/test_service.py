"""The PE's services (nodes/pe/service.py), its cookies (nodes/cookie.py) and the app codec (nodes/app.py).

A pool user is played by hand: application requests are encoded with nodes.app, control
messages (COOKIE_ECHO) with nodes.wire, and what the service sends back is decoded again.
"""

from __future__ import annotations

import hashlib
import json
import struct
import time
from collections.abc import Callable, Sequence
from ipaddress import ip_address
from typing import Any

import pytest

from nodes import app
from nodes.cookie import MAX_COOKIE, MAX_STATE, OVERHEAD, CookieError, CookieSealer
from nodes.pe.service import ServiceCore
from nodes.sansio import Action, Send, SendData
from nodes.wire import (
    AsapError,
    BusinessCard,
    CauseCode,
    Cookie,
    CookieEcho,
    Message,
    PoolElement,
    Protocol,
    SctpTransport,
    decode,
)
from nodes.wire import policies as P

H = b"EchoPool"
SECRET = b"pool secret of EchoPool"
APP_PPID = 0x564E4650
PE_ID = 0x0000BEEF
S = 1  # the session's association


# ------------------------------------------------------------------ helpers


def sealer(secret: bytes = SECRET, handle: bytes = H) -> CookieSealer:
    return CookieSealer(secret, handle)


def make_service(
    service: str = "echo", *, cookies: bool = True, every: int = 1, card: Callable[[], Any] = lambda: None
) -> ServiceCore:
    return ServiceCore(service, PE_ID, sealer() if cookies else None, cookie_every=every, card=card)


def echo(seq: int, payload: bytes = b"hello") -> bytes:
    return app.AppMessage(app.AppType.ECHO_REQUEST, seq, 0, payload).encode()


def calc(seq: int, work: int) -> bytes:
    return app.AppMessage(app.AppType.CALC_REQUEST, seq, work).encode()


def replies(actions: Sequence[Action], assoc: int = S) -> list[app.AppMessage]:
    return [app.decode(a.data) for a in actions if isinstance(a, SendData) and a.assoc == assoc]


def control(actions: Sequence[Action], assoc: int = S) -> list[Message]:
    return [
        decode(a.message.encode(), Protocol.ASAP) for a in actions if isinstance(a, Send) and a.assoc == assoc
    ]


def cookies(actions: Sequence[Action]) -> list[bytes]:
    return [m.cookie for m in control(actions) if isinstance(m, Cookie)]


def request(core: ServiceCore, data: bytes, assoc: int = S) -> list[Action]:
    return core.receive(assoc, data, APP_PPID, 0.0)


def echo_cookie(core: ServiceCore, cookie: bytes, assoc: int = S) -> list[Action]:
    return core.receive(assoc, CookieEcho(cookie=cookie).encode(), Protocol.ASAP.ppid, 0.0)


def state_cookie(state: object, secret: bytes = SECRET, handle: bytes = H) -> bytes:
    return sealer(secret, handle).seal(json.dumps(state).encode())


def assert_security_error(actions: Sequence[Action]) -> None:
    (error,) = control(actions)
    assert isinstance(error, AsapError)
    assert [c.code for c in error.error] == [CauseCode.REJECTED_SECURITY]


# ------------------------------------------------------------------ services


def test_echo_replies_with_payload_and_served_count() -> None:
    core = make_service(cookies=False)
    core.association_up(S, 0.0)
    for seq in (10, 11, 12):
        (reply,) = replies(request(core, echo(seq, b"x" * seq)))
        assert reply.type is app.AppType.ECHO_REPLY
        assert reply.seq == seq
        assert reply.value == seq - 9  # 1, 2, 3: requests served in this session
        assert reply.payload == b"x" * seq


def test_served_count_is_per_session() -> None:
    core = make_service(cookies=False)
    core.association_up(1, 0.0)
    core.association_up(2, 0.0)
    request(core, echo(1), 1)
    request(core, echo(2), 1)
    (reply,) = replies(request(core, echo(3), 2), 2)
    assert reply.value == 1
    assert core.requests == 3


def test_calc_replies_with_the_digest_of_the_work() -> None:
    core = make_service("calc", cookies=False)
    core.association_up(S, 0.0)
    digest = b""
    for _ in range(3):
        digest = hashlib.sha256(bytes(1024) + digest).digest()
    (reply,) = replies(request(core, calc(5, 3)))
    assert reply.type is app.AppType.CALC_REPLY
    assert (reply.seq, reply.value, reply.payload) == (5, 1, digest[:8])
    (zero,) = replies(request(core, calc(6, 0)))
    assert (zero.value, zero.payload) == (2, bytes(8))


def test_discard_sends_nothing_but_counts() -> None:
    core = make_service("discard")
    core.association_up(S, 0.0)
    assert request(core, echo(1)) == []
    assert core.requests == 1


def test_unknown_service_is_refused() -> None:
    with pytest.raises(ValueError):
        ServiceCore("nonsense", PE_ID, None)


def test_bad_application_request_is_not_answered() -> None:
    core = make_service()
    core.association_up(S, 0.0)
    broken = echo(1)[:-1]  # its length field now disagrees
    assert replies(request(core, broken)) == [] and control(request(core, broken)) == []
    (reply,) = replies(request(core, echo(2)))
    assert reply.value == 1  # a bad request is not served


# ------------------------------------------------------------------ cookies


def test_a_cookie_follows_every_reply_and_carries_the_served_count() -> None:
    core = make_service()
    core.association_up(S, 0.0)
    for served in (1, 2):
        actions = request(core, echo(served))
        assert [type(a) for a in actions if isinstance(a, Send | SendData)] == [SendData, Send]  # reply first
        (cookie,) = cookies(actions)
        state = json.loads(sealer().open(cookie))
        assert (state["served"], state["pe"]) == (served, PE_ID)
        assert abs(state["issued"] - time.time()) < 60  # wall clock: other PEs check its age


def test_cookies_every_n_replies() -> None:
    core = make_service(every=3)
    core.association_up(S, 0.0)
    with_cookie = [served for served in range(1, 10) if cookies(request(core, echo(served)))]
    assert with_cookie == [3, 6, 9]


def test_no_cookies_without_a_secret() -> None:
    core = make_service(cookies=False)
    core.association_up(S, 0.0)
    assert cookies(request(core, echo(1))) == []


def test_cookie_echo_restores_the_session_at_another_pe() -> None:
    first = make_service()
    first.association_up(S, 0.0)
    for seq in range(4):
        (cookie,) = cookies(request(first, echo(seq)))

    other = ServiceCore("echo", PE_ID + 1, sealer())  # another PE of the same pool
    other.association_up(7, 0.0)
    assert control(echo_cookie(other, cookie, 7), 7) == []
    assert other.sessions[7].restored_from == f"0x{PE_ID:08x}"
    (reply,) = replies(request(other, echo(99), 7), 7)
    assert reply.value == 5  # four served before the failover, this is the fifth


def forged_cookies() -> list[tuple[str, bytes]]:
    good = state_cookie({"served": 4, "pe": PE_ID})
    flipped = bytearray(good)
    flipped[OVERHEAD - 32 + 3] ^= 0x01  # a ciphertext bit
    tag_flipped = bytearray(good)
    tag_flipped[-1] ^= 0x80
    return [
        ("altered ciphertext", bytes(flipped)),
        ("altered tag", bytes(tag_flipped)),
        ("truncated", good[:-1]),
        ("too short for the envelope", good[: OVERHEAD - 1]),
        ("another pool", state_cookie({"served": 4, "pe": PE_ID}, handle=b"OtherPool")),
        ("another secret", state_cookie({"served": 4, "pe": PE_ID}, secret=b"guessed")),
        ("plain text", json.dumps({"served": 4}).encode() + bytes(OVERHEAD)),
        ("sealed but not JSON", sealer().seal(b"\xff not json")),
        ("sealed JSON without served", state_cookie({"pe": PE_ID})),
        ("sealed JSON of the wrong shape", state_cookie([1, 2])),
    ]


@pytest.mark.parametrize("name, cookie", forged_cookies(), ids=[n for n, _ in forged_cookies()])
def test_bad_cookie_is_rejected_and_the_session_goes_on(name: str, cookie: bytes) -> None:
    core = make_service()
    core.association_up(S, 0.0)
    assert_security_error(echo_cookie(core, cookie))
    (reply,) = replies(request(core, echo(1)))
    assert reply.value == 1  # fresh state, not the cookie's 4


def test_cookie_echo_without_a_secret_is_ignored() -> None:
    core = make_service(cookies=False)
    core.association_up(S, 0.0)
    assert control(echo_cookie(core, state_cookie({"served": 4}))) == []
    assert replies(request(core, echo(1)))[0].value == 1


def test_sealed_cookies_differ_and_open_to_the_state() -> None:
    s = sealer()
    a, b = s.seal(b"state"), s.seal(b"state")
    assert a != b  # fresh nonce
    assert len(a) == OVERHEAD + len(b"state")
    assert b"state" not in a  # encrypted
    assert s.open(a) == s.open(b) == b"state"


def test_cookie_size_limit_fits_one_asap_message() -> None:
    s = sealer()
    biggest = s.seal(bytes(MAX_STATE))
    assert len(biggest) == MAX_COOKIE
    # the largest cookie still fits an ASAP_COOKIE, whose 16-bit length counts header, TLV and padding
    data = Cookie(cookie=biggest).encode()
    assert len(data) <= 0xFFFF
    assert decode(data, Protocol.ASAP) == Cookie(cookie=biggest)
    assert s.open(biggest) == bytes(MAX_STATE)
    with pytest.raises(CookieError):
        s.seal(bytes(MAX_STATE + 1))
    with pytest.raises(CookieError):
        s.open(biggest + b"\0")


def test_cookie_limit_is_the_largest_that_fits() -> None:
    # one (padded) 4-byte word more and the ASAP_COOKIE message no longer fits 65535 bytes
    assert 4 + 4 + (MAX_COOKIE + 1 + 3) // 4 * 4 > 0xFFFF
    assert 4 + 4 + MAX_COOKIE <= 0xFFFF


def test_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        CookieSealer(b"", H)


# ------------------------------------------------------------------ business card


def mate(ident: int) -> PoolElement:
    transport = SctpTransport(port=7000 + ident, addresses=(ip_address("10.0.1.9"),))
    return PoolElement(ident, 0x11, 30000, transport, P.LeastUsed(load=ident))


def test_business_card_names_the_pool_mates_at_session_start() -> None:
    mates = (mate(2), mate(3))
    core = make_service(card=lambda: (H, P.LeastUsed(load=0), mates))
    (card,) = control(core.association_up(S, 0.0))
    assert isinstance(card, BusinessCard)
    assert card.pool_handle == H
    assert card.pool_elements == mates
    assert card.policy == P.LeastUsed(load=0)


@pytest.mark.parametrize("card", [lambda: None, lambda: (H, P.RoundRobin(), ())])
def test_no_business_card_without_mates(card: Callable[[], Any]) -> None:
    core = make_service(card=card)
    assert control(core.association_up(S, 0.0)) == []


def test_session_down_forgets_the_session() -> None:
    core = make_service()
    core.association_up(S, 0.0)
    request(core, echo(1))
    core.association_down(S, 1.0)
    assert S not in core.sessions
    core.association_up(S, 2.0)  # association ids may be reused
    assert replies(request(core, echo(2)))[0].value == 1


# ------------------------------------------------------------------ app codec


@pytest.mark.parametrize(
    "message",
    [
        app.AppMessage(app.AppType.ECHO_REQUEST, 0, 0, b""),
        app.AppMessage(app.AppType.ECHO_REPLY, 0xFFFFFFFF, 7, b"\x00\x01payload"),
        app.AppMessage(app.AppType.CALC_REQUEST, 3, 1_000_000),
        app.AppMessage(app.AppType.CALC_REPLY, 3, 2, bytes(range(8))),
    ],
)
def test_app_round_trip(message: app.AppMessage) -> None:
    data = message.encode()
    assert data[0] == message.type and data[0] >= 0x80
    assert struct.unpack_from("!H", data, 2)[0] == len(data) == 12 + len(message.payload)
    assert app.is_app(data)
    assert app.decode(data) == message


def test_app_messages_are_told_from_asap() -> None:
    assert not app.is_app(b"")
    assert not app.is_app(CookieEcho(cookie=b"c").encode())
    assert app.is_app(echo(1))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x81\x00\x00\x0c\x00\x00\x00\x01",  # shorter than the fixed part
        b"\x81\x00\x00\x0d" + bytes(8),  # length field says 13, 12 bytes given
        b"\x81\x00\x00\x0c" + bytes(9),  # length field says 12, 13 bytes given
        b"\x85\x00\x00\x0c" + bytes(8),  # unknown type
        b"\x80\x00\x00\x0c" + bytes(8),  # app range, but no such type
    ],
)
def test_app_decode_errors(data: bytes) -> None:
    with pytest.raises(app.AppError):
        app.decode(data)


def test_app_message_size_limit() -> None:
    biggest = app.AppMessage(app.AppType.ECHO_REQUEST, 1, 0, bytes(65535 - 12))
    assert len(biggest.encode()) == 65535
    with pytest.raises(app.AppError):
        app.AppMessage(app.AppType.ECHO_REQUEST, 1, 0, bytes(65535 - 11)).encode()


def test_foreign_data_of_another_ppid_is_echoed_as_it_came() -> None:
    """RSPLIB's rspterminal sends plain text with a PPID of its own: the echo service returns it."""
    core = make_service(cookies=False)
    core.association_up(S, 0.0)
    actions = core.receive(S, b"hello rsplib\n", 0, 1.0)
    assert [(a.data, a.ppid) for a in actions if isinstance(a, SendData)] == [(b"hello rsplib\n", 0)]
    discard = make_service(service="discard", cookies=False)
    discard.association_up(S, 0.0)
    assert not [a for a in discard.receive(S, b"hello", 0, 1.0) if isinstance(a, SendData)]


def test_a_cookie_echo_after_the_first_request_is_ignored() -> None:
    """Only a new session may be restored: a PU must not roll a running one back."""
    first = make_service()
    first.association_up(S, 0.0)
    (old,) = cookies(request(first, echo(1)))
    core = make_service()
    core.association_up(S, 0.0)
    request(core, echo(1))
    request(core, echo(2))
    actions = echo_cookie(core, old)
    assert [e.fields["reason"] for e in actions if getattr(e, "event", "") == "cookie-ignored"]
    (reply,) = replies(request(core, echo(3)))
    assert reply.value == 3  # not 2: the old state was not taken


def test_an_expired_cookie_is_refused() -> None:
    clock = [1000.0]
    issuer = ServiceCore("echo", PE_ID, sealer(), clock=lambda: clock[0])
    issuer.association_up(S, 0.0)
    (cookie,) = cookies(request(issuer, echo(1)))
    clock[0] += 3601.0
    later = ServiceCore("echo", PE_ID + 1, sealer(), clock=lambda: clock[0])
    later.association_up(S, 0.0)
    assert_security_error(echo_cookie(later, cookie))


def test_calc_work_is_capped() -> None:
    from nodes.pe.service import MAX_WORK, _burn

    assert _burn(MAX_WORK + 5) == _burn(MAX_WORK)
