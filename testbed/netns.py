"""Network namespaces and veth links made by the testbed, and their cleanup.

Every name the testbed gives starts with `PREFIX`, so `testbed clean` can find what a
crashed run left behind and remove exactly that, and nothing of anyone else's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator, Sequence

PREFIX = "vtb"


class NetnsError(RuntimeError):
    """An `ip` command failed; the message carries its stderr."""


def run_ip(*args: str) -> str:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def in_netns(ns: str, argv: Sequence[str]) -> list[str]:
    """The argv that runs `argv` inside namespace `ns`."""
    return ["ip", "netns", "exec", ns, *argv]


def unique_name(tag: str) -> str:
    """A name with the testbed prefix, unique per process, at most 15 chars (IFNAMSIZ)."""
    return f"{PREFIX}{os.getpid() % 100000}{tag}"[:15]


def add_namespace(name: str) -> None:
    run_ip("netns", "add", name)
    run_ip("-n", name, "link", "set", "lo", "up")


def add_veth(ns_a: str, if_a: str, ns_b: str, if_b: str) -> None:
    """A veth pair with one end in each namespace, both up."""
    run_ip("link", "add", if_a, "netns", ns_a, "type", "veth", "peer", "name", if_b, "netns", ns_b)
    run_ip("-n", ns_a, "link", "set", if_a, "up")
    run_ip("-n", ns_b, "link", "set", if_b, "up")


def pids_in(ns: str) -> list[int]:
    result = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
    return [int(p) for p in result.stdout.split()]


def delete_namespace(name: str) -> None:
    """Kill what runs inside, then delete; the veth ends inside go with it."""
    for pid in pids_in(name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def testbed_namespaces() -> list[str]:
    result = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    names = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    return [n for n in names if n.startswith(PREFIX)]


def testbed_links() -> list[str]:
    """Links in the root namespace with the testbed prefix (a veth whose peer namespace died)."""
    result = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True)
    links = []
    for line in result.stdout.splitlines():
        name = line.split(":", 2)[1].strip().split("@")[0]
        if name.startswith(PREFIX):
            links.append(name)
    return links


def clean() -> list[str]:
    """Remove every testbed namespace and stray link; return what was removed."""
    removed = []
    for ns in testbed_namespaces():
        delete_namespace(ns)
        removed.append(f"netns {ns}")
    for link in testbed_links():
        subprocess.run(["ip", "link", "delete", link], capture_output=True)
        removed.append(f"link {link}")
    return removed


@contextlib.contextmanager
def namespaces(*names: str) -> Iterator[None]:
    """Create namespaces and remove them on exit, exception or Ctrl-C."""
    made: list[str] = []
    try:
        for name in names:
            made.append(name)  # first: an interrupt during `ip netns add` must still clean it
            add_namespace(name)
        yield
    finally:
        for name in made:
            delete_namespace(name)
