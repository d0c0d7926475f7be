"""Where each chain should run now: the best path the platform ranks, with live instances.

The platform (SXP) ranks the multi-domain paths from the ALTO maps; inside each domain the
instance of a function is chosen by RSerPool, at that domain's registrar with the pool's
policy (through the domain's IBE).  An installed instance is kept while its registrar still
lists it, so a round-robin pool does not make the chain hop at every poll; when it goes, the
registrar chooses another.  When a domain loses every instance of a function, its property
map entry loses the function and the platform's ranking moves the chain to the next path.
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .flows import Hop
from .netmap import ChainSpec, NetMap


class Unavailable(RuntimeError):
    """A platform or IBE call failed; the chain stays as it is."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def unix_call(path: str, method: str, target: str, body: Any = None, timeout: float = 3.0) -> tuple[int, Any]:
    """One HTTP request over a Unix socket: (status, decoded JSON or None)."""
    conn = _UnixConnection(path, timeout)
    try:
        data = None if body is None else json.dumps(body)
        conn.request(method, target, body=data, headers={"Content-Type": "application/json"} if data else {})
        response = conn.getresponse()
        text = response.read().decode()
        return response.status, (json.loads(text) if text else None)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise Unavailable(f"{path} {method} {target}: {exc}") from None
    finally:
        conn.close()


class IbeClient:
    """A domain's Information Base Element, over its Unix socket."""

    def __init__(self, path: str, timeout: float = 3.0) -> None:
        self.path, self.timeout = path, timeout

    def pools(self) -> dict[str, list[dict]]:
        status, body = unix_call(self.path, "GET", "/pools", timeout=self.timeout)
        if status != 200:
            raise Unavailable(f"{self.path} /pools: {status} {body}")
        return body.get("pools", {})

    def resolve(self, handle: str) -> dict | None:
        status, body = unix_call(self.path, "GET", f"/resolve?handle={urllib.parse.quote(handle)}",
                                 timeout=self.timeout)  # fmt: skip
        if status == 404:
            return None
        if status != 200:
            raise Unavailable(f"{self.path} /resolve {handle}: {status} {body}")
        return body["pe"]

    def unreachable(self, handle: str, pe_id: int) -> None:
        unix_call(self.path, "POST", "/unreachable", {"handle": handle, "pe_id": pe_id}, timeout=self.timeout)


class SxpClient:
    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url, self.timeout = url.rstrip("/"), timeout

    def paths(self, chain: ChainSpec, ingress: str, egress: str, k: int = 5) -> list[dict]:
        query = urllib.parse.urlencode({"chain": ",".join(chain.functions), "ingress": ingress,
                                        "egress": egress, "k": k})  # fmt: skip
        try:
            with urllib.request.urlopen(f"{self.url}/sxp/paths?{query}", timeout=self.timeout) as response:
                return json.loads(response.read()).get("paths", [])
        except urllib.error.HTTPError as exc:
            if exc.code == 404:  # no path at all (the reason is in the body)
                try:
                    reason = json.loads(exc.read()).get("error", "no path")
                except ValueError:
                    reason = "no path"
                raise NoPathFound(reason) from None
            raise Unavailable(f"platform: {exc.code}") from None
        except (OSError, ValueError) as exc:
            raise Unavailable(f"platform: {exc}") from None


class NoPathFound(RuntimeError):
    pass


@dataclass(frozen=True)
class Placement:
    """A chain's path (the draft's notation), its cost, its legs' domain routes and its instances."""

    path: str
    cost: float
    legs: tuple[tuple[str, ...], ...]
    hops: tuple[Hop, ...]

    def same_rules(self, other: Placement | None) -> bool:
        """Whether `other` installs the same rules (a cost change alone does not)."""
        return other is not None and (self.path, self.legs, self.hops) == (other.path, other.legs, other.hops)

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "cost": self.cost, "legs": [list(leg) for leg in self.legs],
                "hops": [{"function": h.function, "domain": h.domain, "instance": h.host, "pe_id": h.pe_id}
                         for h in self.hops]}  # fmt: skip


@dataclass
class ChainState:
    spec: ChainSpec
    placement: Placement | None = None
    version: int = 0
    state: str = "waiting"  # waiting, installed, no-path
    reason: str = "not yet computed"
    installed_at: float | None = None
    moves: list[dict] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.spec.name, "spi": self.spec.spi, "functions": list(self.spec.functions),
                "classifier": self.spec.classifier, "destination": self.spec.destination,
                "state": self.state, "reason": self.reason, "version": self.version,
                "installed_at": self.installed_at,
                "placement": self.placement.to_json() if self.placement else None, "moves": self.moves[-20:]}  # fmt: skip


class ChainManager:
    """Decides placements; the app installs them.  Clients are injected (tests use fakes)."""

    def __init__(self, net: NetMap, sxp: SxpClient | None, ibe: Callable[[str], IbeClient]) -> None:
        self.net, self.sxp, self.ibe = net, sxp, ibe
        self.states = {c.name: ChainState(c) for c in net.chains}

    def decide(self, state: ChainState) -> tuple[Placement | None, str]:
        """The placement the chain should have now, or None with the reason."""
        if self.sxp is None:
            return None, "no platform (topology without sfc:)"
        chain = state.spec
        ingress, egress = self.net.hosts[chain.classifier].domain, self.net.hosts[chain.destination].domain
        try:
            paths = self.sxp.paths(chain, ingress, egress)
        except NoPathFound as exc:
            return None, str(exc)
        pools: dict[str, dict[str, list[dict]]] = {}
        reasons = []
        for path in paths:
            try:
                placement, why = self._place(state, path, pools)
            except Unavailable as exc:  # one domain's IBE is down: the next path may not need it
                placement, why = None, str(exc)
            if placement is not None:
                return placement, ""
            reasons.append(f"{path['path']}: {why}")
        return None, "; ".join(reasons) or "the platform ranked no path"

    def _place(self, state: ChainState, path: dict, pools: dict) -> tuple[Placement | None, str]:
        hops = []
        for index, hop in enumerate(path["hops"]):
            function, domain = hop["sf"], hop["domain"]
            kept = self._kept(state, index, function, domain, pools)
            if kept is not None:
                hops.append(kept)
                continue
            if domain not in self.net.domains:
                return None, f"domain {domain} is not in this testbed"
            pe = self.ibe(self.net.domains[domain].ibe).resolve(function)
            if pe is None:
                return None, f"{domain}'s registrar has no {function} instance"
            host = self.net.host_by_address(pe.get("addresses", []))
            if host is None or host.sff is None or host.domain != domain:
                return None, f"{function} instance {pe.get('addresses')} is not on {domain}'s SFF"
            hops.append(Hop(function, domain, host.name, int(pe.get("pe_id", 0))))
        legs = tuple(tuple(leg) for leg in path["legs"])
        return Placement(path["path"], float(path["cost"]), legs, tuple(hops)), ""

    def _kept(self, state: ChainState, index: int, function: str, domain: str, pools: dict) -> Hop | None:
        """The installed instance of this hop, if the registrar still lists it."""
        if state.placement is None or index >= len(state.placement.hops):
            return None
        old = state.placement.hops[index]
        if (old.function, old.domain) != (function, domain):
            return None
        if domain not in pools:
            pools[domain] = self.ibe(self.net.domains[domain].ibe).pools()
        alive = {int(pe.get("pe_id", 0)) for pe in pools[domain].get(function, [])}
        return old if old.pe_id in alive else None


def describe_move(old: Placement | None, new: Placement | None) -> str:
    """Why a chain moved, in a few words: the path, or which instances changed."""
    if old is None:
        return "first installation" if new else "no placement"
    if new is None:
        return f"{old.path}: no path left"
    if old.path != new.path:
        return f"path {old.path} -> {new.path}"
    changed = [f"{a.function}@{a.domain}: {a.host} -> {b.host}" for a, b in zip(old.hops, new.hops) if a != b]
    return "instance " + ", ".join(changed) if changed else "legs changed"
