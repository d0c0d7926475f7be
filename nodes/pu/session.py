"""The pool user's asyncio layer: `PoolUser` (resolution) and `Session` (transparent failover).

    async with PoolUser(registrars, log) as pu:
        session = Session(pu, b"EchoPool", log)
        reply = await session.request(AppMessage(AppType.ECHO_REQUEST, seq=1, payload=b"hi"))

A session talks to one PE at a time.  When the PE fails (its association ends, or a reply
does not come within `reply_timeout`), the session reports it unreachable to the registrar,
picks the next candidate (a fresh handle resolution, else the PE's BUSINESS_CARD), connects,
echoes the last cookie it received so that the new PE restores the session state, and sends
the unanswered request again.  The application sees one slower reply and nothing else; the
log has a `failover` event with the gap it caused.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from nodes import app, transport
from nodes.pu.core import PoolUserCore, PoolUserOptions, Resolution
from nodes.runtime import APP_PPID, Driver, EventLog, ppid_for
from nodes.sansio import Result
from nodes.transport import Association, AssociationClosed, TransportError, TransportOptions
from nodes.wire import BusinessCard, Cookie, CookieEcho, DecodeError, PoolElement, Protocol, decode


class PoolUser:
    def __init__(self, options: PoolUserOptions, log: EventLog, *, backend: str = "auto",
                 transport_options: TransportOptions | None = None, local: tuple[str, ...] = ()) -> None:  # fmt: skip
        self.core = PoolUserCore(options)
        self.log = log
        self.backend = backend
        self.transport_options = transport_options or TransportOptions()
        self.local = local
        self.tokens = itertools.count(1)
        self.waiting: dict[Any, asyncio.Future[Resolution]] = {}
        self.driver: Driver | None = None

    async def __aenter__(self) -> PoolUser:
        self.driver = Driver(self.core, self.log, backend=self.backend, options=self.transport_options,
                             local=self.local)  # fmt: skip
        self.driver.on_result = self._result
        self.driver.execute(self.core.start(self.driver.now()))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.driver:
            await self.driver.flush(1.0)
            await self.driver.close()

    def _result(self, result: Result) -> None:
        future = self.waiting.pop(result.token, None)
        if future is not None and not future.done():
            future.set_result(result.value)

    async def resolve(self, handle: bytes, items: int | None = None) -> Resolution:
        assert self.driver is not None
        token = next(self.tokens)
        future: asyncio.Future[Resolution] = asyncio.get_running_loop().create_future()
        self.waiting[token] = future
        self.driver.call("resolve", token, handle, items, self.driver.now())
        return await future

    def report_unreachable(self, handle: bytes, pe_id: int) -> None:
        assert self.driver is not None
        self.driver.call("report_unreachable", handle, pe_id, self.driver.now())


class SessionFailed(Exception):
    """No PE of the pool could serve the request within the session's patience."""


class Session:
    def __init__(self, pu: PoolUser, handle: bytes, log: EventLog, *, reply_timeout: float = 2.0,
                 patience: float = 30.0, items: int = 3) -> None:  # fmt: skip
        self.pu, self.handle, self.log = pu, handle, log
        self.reply_timeout, self.patience, self.items = reply_timeout, patience, items
        self.cookie: bytes | None = None
        self.card: tuple[PoolElement, ...] = ()
        self.pe: PoolElement | None = None
        self.assoc: Association | None = None
        self.reader: asyncio.Task[None] | None = None
        self.replies: dict[int, asyncio.Future[app.AppMessage]] = {}
        self.failovers = 0
        self.failed: dict[int, float] = {}  # PE id -> until when not to try it again
        self.avoid_for = 30.0

    async def request(self, message: app.AppMessage) -> app.AppMessage:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.patience
        failed_at: float | None = None
        cause = ""
        while loop.time() < deadline:
            try:
                if self.assoc is None or not self.assoc.is_open:
                    if self.pe is not None:  # it ended between two requests: that is a failure too
                        raise AssociationClosed("the PE's association ended", self.assoc.closed_by if self.assoc else None)
                    await self._connect(deadline)
                reply = await self._exchange(message)
            except (TransportError, TimeoutError, OSError) as exc:  # AssociationClosed is a TransportError
                failed_at = failed_at or loop.time()
                cause = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                await self._fail(cause)
                continue
            if failed_at is not None:
                self.failovers += 1
                # The gap the application saw: from sending the request that failed to its reply.
                self.log("failover", to=_pe_name(self.pe), gap_ms=round((loop.time() - started) * 1000, 1),
                         detect_ms=round((failed_at - started) * 1000, 1), cause=cause,
                         restored_cookie=self.cookie is not None)  # fmt: skip
            return reply
        raise SessionFailed(f"no PE of {self.handle!r} answered within {self.patience:g} s ({cause})")

    async def _exchange(self, message: app.AppMessage) -> app.AppMessage:
        assert self.assoc is not None
        future: asyncio.Future[app.AppMessage] = asyncio.get_running_loop().create_future()
        self.replies[message.seq] = future
        try:
            await self.assoc.send(message.encode(), ppid_for(self.assoc, APP_PPID))
            return await asyncio.wait_for(asyncio.shield(future), self.reply_timeout)
        finally:
            self.replies.pop(message.seq, None)

    async def _fail(self, cause: str) -> None:
        pe, self.pe = self.pe, None
        if self.reader is not None:
            self.reader.cancel()  # its association is done with: it must not touch the next one's replies
            self.reader = None
        if self.assoc is not None:
            self.assoc.abort()
            self.assoc = None
        if pe is not None:
            self.log("pe-failed", pe=_pe_name(pe), cause=cause)
            self._avoid(pe)

    async def _connect(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while loop.time() < deadline:
            for pe in await self._candidates():
                try:
                    assoc = await transport.connect(
                        [str(a) for a in pe.user_transport.addresses], pe.user_transport.port,
                        local=self.pu.local, backend=self.pu.backend, options=self.pu.transport_options,
                    )  # fmt: skip
                except (TransportError, OSError) as exc:
                    self.log("pe-unreachable", pe=_pe_name(pe), error=str(exc))
                    self._avoid(pe)
                    continue
                if self.cookie is not None:
                    try:
                        await assoc.send(CookieEcho(cookie=self.cookie).encode(), ppid_for(assoc, Protocol.ASAP.ppid))
                    except (TransportError, OSError) as exc:
                        self.log("pe-unreachable", pe=_pe_name(pe), error=f"cookie echo: {exc}")
                        assoc.abort()
                        continue
                self.assoc, self.pe = assoc, pe
                self.reader = asyncio.create_task(self._read(assoc))
                self.log("pe-connected", pe=_pe_name(pe), addresses=[str(a) for a in pe.user_transport.addresses])
                return
            await asyncio.sleep(0.25)  # RSPLIB's handle resolution retry delay
        raise SessionFailed(f"no PE of {self.handle!r} reachable")

    def _avoid(self, pe: PoolElement) -> None:
        """Report a failed PE (once while it is avoided: a PU whose own link failed must not
        empty the pool), and skip it for a while: the registrar may list it until its
        keep-alive times out, and connecting to a silent PE costs a whole connect timeout."""
        now = asyncio.get_running_loop().time()
        if self.failed.get(pe.identifier, 0.0) <= now:
            self.pu.report_unreachable(self.handle, pe.identifier)
        self.failed[pe.identifier] = now + self.avoid_for
        self.card = tuple(p for p in self.card if p.identifier != pe.identifier)

    async def _candidates(self) -> list[PoolElement]:
        now = asyncio.get_running_loop().time()
        self.failed = {k: until for k, until in self.failed.items() if until > now}
        resolution = await self.pu.resolve(self.handle, self.items + len(self.failed))
        found = [p for p in resolution.pool_elements if p.identifier not in self.failed]
        if found:
            return found
        card = [p for p in self.card if p.identifier not in self.failed]
        if card:
            self.log("using-business-card", candidates=len(card), error=resolution.error)
            return card
        # Every PE known has failed lately: try them again, the longest-failed first, rather
        # than give up on a pool that may have recovered (or a link of ours that came back).
        return sorted(resolution.pool_elements, key=lambda p: self.failed.get(p.identifier, 0.0))

    async def _read(self, assoc: Association) -> None:
        try:
            while True:
                delivery = await assoc.receive()
                data = delivery.data
                if app.is_app(data):
                    try:
                        reply = app.decode(data)
                    except app.AppError as exc:
                        self.log("bad-reply", error=str(exc))
                        continue
                    future = self.replies.get(reply.seq)
                    if future is not None and not future.done():
                        future.set_result(reply)
                    continue
                self._control(data)
        except AssociationClosed as exc:
            if assoc is not self.assoc:
                return  # an old association's end says nothing about the current one
            for future in self.replies.values():
                if not future.done():
                    future.set_exception(AssociationClosed(str(exc), exc.event))

    def _control(self, data: bytes) -> None:
        try:
            message = decode(data, Protocol.ASAP)
        except DecodeError as exc:
            self.log("malformed-message", **exc.to_dict())
            return
        if isinstance(message, Cookie):
            self.cookie = message.cookie
        elif isinstance(message, BusinessCard):
            self.card = message.pool_elements
            self.log("business-card", candidates=[_pe_name(p) for p in message.pool_elements])
        else:
            self.log("control", message=type(message).__name__)

    async def close(self) -> None:
        if self.assoc is not None:
            await self.assoc.close()
        if self.reader is not None:
            self.reader.cancel()


def _pe_name(pe: PoolElement | None) -> str | None:
    return f"0x{pe.identifier:08x}" if pe is not None else None
