"""Bring-up and teardown time of the testbed harness, side by side with plain Mininet
building the same graph (one domain, one OVS userspace switch, N hosts, no shaping).

    sudo .venv/bin/python bench/bench_harness.py [--sizes 10 50 100]

Prints seconds per phase and the harness/Mininet ratio.  Figures, not asserts.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mininet.log import setLogLevel  # noqa: E402
from mininet.net import Mininet  # noqa: E402
from mininet.node import OVSSwitch  # noqa: E402

from testbed import builder, schema  # noqa: E402
from testbed.api import Testbed  # noqa: E402


def topology(n: int) -> schema.Topology:
    hosts = "\n".join(f"      h{i}: {{}}" for i in range(1, n + 1))
    return schema.parse(f"name: bench{n}\nswitch: {{datapath: user}}\ndomains:\n  D1:\n    hosts:\n{hosts}\n")


def harness(n: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as runs:
        tb = Testbed(topology(n), run_root=runs)
        t0 = time.perf_counter()
        tb.up()
        t1 = time.perf_counter()
        tb.down()
        return t1 - t0, time.perf_counter() - t1


def plain_mininet(n: int) -> tuple[float, float]:
    setLogLevel("error")
    t0 = time.perf_counter()
    net = Mininet(topo=None, build=False, controller=None, waitConnected=False)
    sw = net.addSwitch("vtbffffs1", cls=OVSSwitch, datapath="user", failMode="standalone", dpid="1")
    for i in range(1, n + 1):
        h = net.addHost(f"h{i}")
        net.addLink(h, sw, intfName2=f"vtbffffs1p{i}")
    net.build()
    net.start()
    t1 = time.perf_counter()
    net.stop()
    return t1 - t0, time.perf_counter() - t1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 100])
    args = parser.parse_args()
    started = builder.ensure_ovs()
    print(f"{'hosts':>5} | {'harness up':>10} {'down':>6} | {'mininet up':>10} {'down':>6} | ratio up  down")
    for n in args.sizes:
        h_up, h_down = harness(n)
        m_up, m_down = plain_mininet(n)
        print(f"{n:>5} | {h_up:>9.2f}s {h_down:>5.2f}s | {m_up:>9.2f}s {m_down:>5.2f}s | "
              f"{h_up / m_up:>5.2f}x {h_down / m_down:>4.2f}x", flush=True)
    if started:
        from testbed import cleanup

        cleanup.stop_ovs_if_unused()


if __name__ == "__main__":
    main()
