"""The os-ken application that installs service function chains on the testbed's switches.

Switches connect (OpenFlow 1.3); each gets its base rules (NORMAL, drops on trunks) once its
port names are known, and then the rules of every installed chain that touch it — also after
a switch restart, which lost them.  A loop asks the chain manager where each chain should be
and, when that changed, installs the new version (cookie `spi << 32 | version`) before it
deletes the old one, so a move never leaves a chain without rules.  A chain without any path
gets a classifier rule that drops its traffic: unchained traffic must not slip past its
functions.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import CONFIG_DISPATCHER, DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from os_ken.lib import hub
from os_ken.ofproto import ofproto_v1_3

from nodes.runtime import EventLog

from . import flows as fl
from .chains import ChainManager, ChainState, IbeClient, Placement, SxpClient, Unavailable, describe_move
from .netmap import NetMap
from .rest import serve

CONFIG_ENV = "VTB_STEERING_CONFIG"
MAX_MOVES = 50  #: moves kept per chain for the REST view
#: s the old version's rules stay after a move: a packet already on the old path (over trunks
#: of tens of ms, through SFs) still finds its next rule.  The classifier's rule is replaced
#: at once, so no new packet takes the old path.
DRAIN = 1.0


def _guarded(handler: Any) -> Any:
    """Log a handler's exception instead of raising it: under os-ken's native hub an exception
    ends the app's event thread for good (TaskExit is Exception there), and with it the
    controller's hearing of its switches."""

    @functools.wraps(handler)
    def run(self: SteeringApp, ev: Any) -> None:
        try:
            handler(self, ev)
        except Exception as exc:  # noqa: BLE001
            self.journal("handler-error", handler=handler.__name__, error=repr(exc))

    return run
COOKIE_MASK = 0xFFFFFFFFFFFFFFFF


class SteeringApp(app_manager.OSKenApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        config = json.loads(Path(os.environ[CONFIG_ENV]).read_text())
        self.config = config
        self.journal = EventLog(config.get("name", "controller"))
        self.net = NetMap.from_config(config)
        self.poll = float(config.get("poll_interval", 0.5))
        self.lock = threading.RLock()
        self.datapaths: dict[int, Any] = {}
        self.ports: dict[int, dict[str, int]] = {}
        self.ready: set[int] = set()
        self.installed: dict[str, list[fl.Flow]] = {}
        sxp = SxpClient(config["sxp"]) if config.get("sxp") else None
        self.manager = ChainManager(self.net, sxp, IbeClient)
        serve(int(config.get("rest_port", 8080)), self)
        hub.spawn(self._steer_forever)
        self.journal("controller-started", openflow=config.get("openflow"), chains=len(self.net.chains))

    # -- switches ----------------------------------------------------------------------------

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    @_guarded
    def _features(self, ev: Any) -> None:
        dp, dpid = ev.msg.datapath, ev.msg.datapath_id  # dp.id may not be set yet
        with self.lock:
            self.datapaths[dpid] = dp
            self.ready.discard(dpid)
        dp.send_msg(dp.ofproto_parser.OFPPortDescStatsRequest(dp, 0))
        self.journal("switch-connected", dpid=f"{dpid:016x}")

    @set_ev_cls(ofp_event.EventOFPPortDescStatsReply, MAIN_DISPATCHER)
    @_guarded
    def _port_desc(self, ev: Any) -> None:
        dp = ev.msg.datapath
        with self.lock:
            self.ports[dp.id] = {p.name.decode(): p.port_no for p in ev.msg.body}
            self._reset_switch(dp)
            self.ready.add(dp.id)
        self.journal("switch-ready", dpid=f"{dp.id:016x}", ports=len(self.ports[dp.id]))

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    @_guarded
    def _port_status(self, ev: Any) -> None:
        dp, port = ev.msg.datapath, ev.msg.desc
        with self.lock:
            names = self.ports.setdefault(dp.id, {})
            if ev.msg.reason == dp.ofproto.OFPPR_DELETE:
                names.pop(port.name.decode(), None)
                return
            new = port.name.decode() not in names
            names[port.name.decode()] = port.port_no
            if new and dp.id in self.ready:  # a trunk added after the switch connected
                self._install(dp, fl.base_flows(self.net, dp.id), cookie=0)
                for name, flows in self.installed.items():
                    self._install(dp, [f for f in flows if f.dpid == dp.id], self._cookie(name))

    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    @_guarded
    def _state_change(self, ev: Any) -> None:
        dp = ev.datapath
        if ev.state == DEAD_DISPATCHER and dp.id is not None:
            with self.lock:
                if self.datapaths.get(dp.id) is dp:
                    self.datapaths.pop(dp.id, None)
                    self.ready.discard(dp.id)
            self.journal("switch-disconnected", dpid=f"{dp.id:016x}")

    def _reset_switch(self, dp: Any) -> None:
        """A switch that (re)connects: its table may be stale or empty; make it ours again."""
        ofp, parser = dp.ofproto, dp.ofproto_parser
        dp.send_msg(parser.OFPFlowMod(dp, command=ofp.OFPFC_DELETE, table_id=ofp.OFPTT_ALL,
                                      out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY))  # fmt: skip
        self._install(dp, fl.base_flows(self.net, dp.id), cookie=0)
        for name, flows in self.installed.items():
            self._install(dp, [f for f in flows if f.dpid == dp.id], self._cookie(name))

    # -- rules -------------------------------------------------------------------------------

    def _cookie(self, chain: str) -> int:
        state = self.manager.states[chain]
        return state.spec.spi << 32 | state.version

    def _install(self, dp: Any, rules: list[fl.Flow], cookie: int) -> None:
        ofp, parser = dp.ofproto, dp.ofproto_parser
        names = self.ports.get(dp.id, {})
        for rule in rules:
            missing = rule.ports() - set(names)
            if missing:
                raise Unavailable(f"switch {dp.id:016x} has no port {', '.join(sorted(missing))} yet")
            match = parser.OFPMatch(**{k: (names[v] if k == "in_port" else v) for k, v in rule.match})
            actions = [self._action(parser, ofp, names, a) for a in rule.actions]
            inst = [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions)] if actions else []
            dp.send_msg(parser.OFPFlowMod(dp, cookie=cookie, priority=rule.priority, match=match, instructions=inst))

    @staticmethod
    def _action(parser: Any, ofp: Any, names: dict[str, int], action: tuple) -> Any:
        kind = action[0]
        if kind == "output":
            return parser.OFPActionOutput(names[action[1]])
        if kind == "normal":
            return parser.OFPActionOutput(ofp.OFPP_NORMAL)
        if kind == "in_port":
            return parser.OFPActionOutput(ofp.OFPP_IN_PORT)
        if kind == "push_mpls":
            return parser.OFPActionPushMpls(action[1])
        if kind == "pop_mpls":
            return parser.OFPActionPopMpls(action[1])
        if kind == "set_field":
            return parser.OFPActionSetField(**{action[1]: action[2]})
        raise ValueError(f"unknown action {action!r}")

    def _delete_cookie(self, cookie: int) -> None:
        with self.lock:
            datapaths = list(self.datapaths.values())
        for dp in datapaths:
            ofp, parser = dp.ofproto, dp.ofproto_parser
            dp.send_msg(parser.OFPFlowMod(dp, command=ofp.OFPFC_DELETE, table_id=ofp.OFPTT_ALL, cookie=cookie,
                                          cookie_mask=COOKIE_MASK, out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY))

    # -- chains ------------------------------------------------------------------------------

    def _steer_forever(self) -> None:
        while True:
            if self.all_ready():
                for state in list(self.manager.states.values()):
                    try:
                        self._steer(state)
                    except Unavailable as exc:
                        state.reason = str(exc)
                    except Exception as exc:  # noqa: BLE001 (the loop must outlive any one chain's bug)
                        state.reason = f"internal error: {exc!r}"
                        self.journal("steer-error", chain=state.spec.name, error=repr(exc))
            hub.sleep(self.poll)

    def _steer(self, state: ChainState) -> None:
        placement, why = self.manager.decide(state)
        if placement is not None and state.state == "installed" and placement.same_rules(state.placement):
            state.placement = placement  # the cost may have changed, the rules have not
            return
        if placement is None and state.state == "no-path":
            state.reason = why
            return
        rules = self._rules(state, placement)
        old_cookie = self._cookie(state.spec.name) if state.version else None
        with self.lock:
            missing = sorted({r.dpid for r in rules} - set(self.datapaths))
            if missing:
                raise Unavailable(f"switch {missing[0]:016x} is not connected")
            state.version += 1
            cookie = self._cookie(state.spec.name)
            # Downstream first, the classifier last: no packet enters the new version before
            # the rules that carry it are there.  A failure takes the partial version out again.
            ordered = sorted(rules, key=lambda r: r.priority == fl.PRIORITY_CLASSIFIER)
            try:
                for rule in ordered:
                    self._install(self.datapaths[rule.dpid], [rule], cookie)
            except Exception:
                self._delete_cookie(cookie)
                state.version -= 1
                raise
            if old_cookie is not None:  # after the packets in flight on the old path are through
                hub.spawn_after(DRAIN, self._delete_cookie, old_cookie)
            self.installed[state.spec.name] = rules
        self._record(state, placement, why)

    def _rules(self, state: ChainState, placement: Placement | None) -> list[fl.Flow]:
        if placement is not None:
            return fl.compile_chain(self.net, state.spec, placement.legs, placement.hops)
        return [fl.drop_flow(self.net, state.spec)]

    def _record(self, state: ChainState, placement: Placement | None, why: str) -> None:
        reason = describe_move(state.placement, placement) if placement else why
        now = time.time()
        event = "chain-installed" if state.placement is None and placement else ("chain-moved" if placement else "chain-no-path")
        state.moves.append({"t": now, "version": state.version, "reason": reason,
                            "from": state.placement.path if state.placement else None,
                            "to": placement.path if placement else None})  # fmt: skip
        del state.moves[:-MAX_MOVES]
        state.placement, state.installed_at = placement, now
        state.state, state.reason = ("installed", "") if placement else ("no-path", why)
        self.journal(event, chain=state.spec.name, version=state.version, reason=reason,
                    path=placement.path if placement else None,
                    instances=[h.host for h in placement.hops] if placement else [])  # fmt: skip

    # -- the REST view -----------------------------------------------------------------------

    def all_ready(self) -> bool:
        with self.lock:
            return self.net.all_dpids() <= self.ready

    def health(self) -> dict:
        with self.lock:
            return {"ready": self.all_ready(), "switches": sorted(f"{d:016x}" for d in self.ready),
                    "expected": len(self.net.all_dpids())}  # fmt: skip

    def chains(self) -> list[dict]:
        return [s.to_json() for s in self.manager.states.values()]

    def flows(self, chain: str) -> list[dict] | None:
        if chain not in self.manager.states:
            return None
        return [{"dpid": f"{f.dpid:016x}", "priority": f.priority, "match": dict(f.match),
                 "actions": [list(a) for a in f.actions]} for f in self.installed.get(chain, [])]  # fmt: skip
