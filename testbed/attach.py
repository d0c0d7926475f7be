"""Mininet's own CLI on a testbed owned by another process (`testbed up --detach`).

Mininet's CLI needs node objects with a shell.  Here each node's shell is started inside
the namespaces of the running host (`mnexec -a <pid>`) instead of in a new one, so `h1 ping
h2`, `nodes`, `net`, `pingall`, `xterm`-free commands and `py` all work as in `mn`, and
leaving the CLI only ends these shells: the testbed keeps running.
"""

from __future__ import annotations

import pty
import select

from mininet.cli import CLI
from mininet.link import Intf
from mininet.net import Mininet
from mininet.node import Host


class AttachedHost(Host):
    """A Mininet host whose shell joins an existing namespace."""

    def __init__(self, name: str, target_pid: int, **params):
        self.target_pid = target_pid
        super().__init__(name, inNamespace=True, **params)

    def startShell(self, mnopts=None) -> None:  # noqa: N802 (Mininet's name)
        cmd = ["mnexec", "-cd", "-a", str(self.target_pid), "env", "PS1=" + chr(127), "bash", "--norc",
               "--noediting", "-is", "mininet:" + self.name]  # fmt: skip
        self.master, self.slave = pty.openpty()
        self.shell = self._popen(cmd, stdin=self.slave, stdout=self.slave, stderr=self.slave, close_fds=False)
        self.stdin = self.stdout = __import__("os").fdopen(self.master, "r")
        self.pid = self.shell.pid
        self.pollOut = select.poll()
        self.pollOut.register(self.stdout)
        self.outToNode[self.stdout.fileno()] = self
        self.inToNode[self.stdin.fileno()] = self
        self.execed = False
        self.lastCmd = None
        self.lastPid = None
        self.readbuf = ""
        while True:  # wait for the prompt, as Mininet's own startShell does
            data = self.read(1024)
            if data[-1] == chr(127):
                break
            self.pollOut.poll()
        self.waiting = False
        self.cmd("unset HISTFILE; stty -echo; set +m")


class AttachedNet(dict):
    """Just enough of `Mininet` for its CLI: nodes by name, hosts, ping and pingall."""

    ping = Mininet.ping
    pingAll = Mininet.pingAll  # noqa: N815
    pingFull = Mininet.pingFull  # noqa: N815
    _parsePing = staticmethod(Mininet._parsePing)

    def __init__(self, state: dict):
        super().__init__()
        self.hosts: list[AttachedHost] = []
        self.switches: list = []
        self.controllers: list = []
        self.links: list = []
        for h in state["hosts"]:
            node = AttachedHost(h["name"], h["pid"])
            for port, i in enumerate(h["interfaces"]):
                intf = Intf(i["name"], node=node, port=port, moveIntfFn=lambda *_a, **_k: True)  # already there
                intf.ip, intf.prefixLen = i["address"].split("/")[0], int(i["address"].split("/")[1])
            self[h["name"]] = node
            self.hosts.append(node)

    def close(self) -> None:
        for node in self.hosts:
            node.terminate()


def attached_cli(state: dict) -> None:
    net = AttachedNet(state)
    try:
        CLI(net)
    finally:
        net.close()
