"""What the registrar, pool element and pool user programs share: CLI, config, metrics, life.

Each program takes its settings from command-line flags, from a JSON config file, or both
(flags win).  The config file is the one the testbed writes for every node
(`testbed.processes.context`): its addresses, interfaces, the registrars of its domain and
its spec from the topology, whose `options` mapping holds the same flags without dashes
(`options: {keepalive-interval: 1}` is `--keepalive-interval 1`).  So a topology, a shell
and a test all drive a node the same way, and a bad option gets argparse's clear error.

Counters are exposed in Prometheus' text format by prometheus_client: one counter per event
name the node logs (`vnfpool_events_total{event="pe-registered"}`) and the core's gauges.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from nodes.runtime import EventLog
from nodes.transport import TransportOptions


def base_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", type=Path, help="JSON config written by the testbed (flags override it)")
    parser.add_argument("--name", help="node name in logs and metrics (default: from the config)")
    parser.add_argument("--local", action="append", default=[], metavar="ADDR",
                        help="local address (repeatable: multi-homed); default: the config's addresses")  # fmt: skip
    parser.add_argument("--interface", action="append", default=[], metavar="IF",
                        help="interface for multicast announces (repeatable); default: the config's")  # fmt: skip
    parser.add_argument("--backend", default="auto", help="auto, kernel-sctp, usrsctp, tcp or mptcp")
    parser.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus metrics on this port (0: off)")
    parser.add_argument("--rto-min-ms", type=int, default=200, help="SCTP RTO.Min")
    parser.add_argument("--rto-max-ms", type=int, default=2000, help="SCTP RTO.Max")
    parser.add_argument("--heartbeat-ms", type=int, default=1000, help="SCTP path heartbeat interval")
    parser.add_argument("--path-max-retrans", type=int, default=2, help="SCTP Path.Max.Retrans")
    return parser


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> tuple[argparse.Namespace, dict[str, Any]]:
    """Flags, with the config file's spec options inserted before the command line's own."""
    first, _ = parser.parse_known_args(argv)
    config: dict[str, Any] = {}
    if first.config is not None:
        try:
            config = json.loads(first.config.read_text())
        except (OSError, ValueError) as exc:
            parser.error(f"cannot read config {first.config}: {exc}")
    options = config.get("spec", {}).get("options", {})
    from_config = [item for key, value in options.items() for item in _flag(key, value)]
    command_line = list(argv if argv is not None else sys.argv[1:])
    args = parser.parse_args([*from_config, *command_line])
    if from_config:  # a repeatable flag given on the command line replaces the config's, not adds to it
        own = parser.parse_args(command_line)
        for action in parser._actions:
            if isinstance(action, argparse._AppendAction) and getattr(own, action.dest):
                setattr(args, action.dest, getattr(own, action.dest))
    if not args.local:
        args.local = list(config.get("addresses", []))
    if not args.interface:
        args.interface = [i["name"] for i in config.get("interfaces", [])]
    if not args.name:
        args.name = config.get("name") or parser.prog
    return args, config


def _flag(key: str, value: Any) -> list[str]:
    flag = "--" + str(key).replace("_", "-")
    if value is True:
        return [flag]
    if value is False:
        return []
    return [flag, str(value)]


def transport_options(args: argparse.Namespace) -> TransportOptions:
    """SCTP timers shorter than RFC 4960's (failover in seconds, not minutes), yet long enough
    that twenty nodes starting at once on two cores do not declare each other dead."""
    return TransportOptions(
        rto_min_ms=args.rto_min_ms, rto_initial_ms=max(args.rto_min_ms, 1000), rto_max_ms=args.rto_max_ms,
        heartbeat_interval_ms=args.heartbeat_ms, path_max_retrans=args.path_max_retrans, connect_timeout_s=5.0,
    )  # fmt: skip


def serve_metrics(port: int, log: EventLog, gauges: Callable[[], dict[str, float]]) -> None:
    """Prometheus text format on http://0.0.0.0:port/metrics (a daemon thread)."""
    if not port:
        return
    registry = CollectorRegistry()
    registry.register(_NodeCollector(log, gauges))
    try:
        start_http_server(port, registry=registry)
    except OSError as exc:  # a busy port costs the metrics, never the node
        log("metrics-unavailable", port=port, error=str(exc))
        return
    log("metrics", port=port)


class _NodeCollector(Collector):
    def __init__(self, log: EventLog, gauges: Callable[[], dict[str, float]]) -> None:
        self.log, self.gauges = log, gauges

    def collect(self):  # type: ignore[no-untyped-def]
        events = CounterMetricFamily("vnfpool_events", "Events logged by the node", labels=["node", "event"])
        for event, count in sorted(self.log.counts.items()):
            events.add_metric([self.log.node, event], count)
        yield events
        for name, value in sorted(self.gauges().items()):
            gauge = GaugeMetricFamily(f"vnfpool_{name}", name.replace("_", " "), labels=["node"])
            gauge.add_metric([self.log.node], value)
            yield gauge


async def until_signalled() -> None:
    """Until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def parse_endpoint(text: str, default_port: int) -> tuple[tuple[str, ...], int]:
    """"10.1.1.10,10.1.2.10:3863" or "[fd00::1]:3863" or "10.1.1.10" -> (addresses, port)."""
    host, port = text, default_port
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError(f"{text!r}: unclosed '['")
        host, rest = text[1:close], text[close + 1 :]
        if rest:
            port = int(rest.lstrip(":"))
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = int(port_text)
    addresses = tuple(a for a in host.split(",") if a)
    if not addresses or not 0 < port < 65536:
        raise ValueError(f"{text!r}: expected ADDR[,ADDR...][:PORT]")
    return addresses, port
