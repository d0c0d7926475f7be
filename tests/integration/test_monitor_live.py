"""The recursive monitor on a running testbed: the draft's Figure 1 on hosts vm1 ... vm10.

`topologies/recursive-monitor.yaml` as a user runs it: the monitor process measures every host's
CPU and probes delays; the tests ask it through its Unix socket (what `testbed query` does) and
check the answers against what was done to the hosts: a CPU stress on one VM of NF1, and the
shaped links (vm10's 20 ms, the NF1-NF2 domain link's 10 ms, each way).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from testbed.api import Testbed
from testbed.cli_query import _ask
from testbed.processes import monitor_socket
from tests.netlab import needs_root

pytestmark = [pytest.mark.netns, needs_root]
ROOT = Path(__file__).resolve().parents[2]


class Monitor:
    def __init__(self, tb: Testbed) -> None:
        self.tb = tb
        self.socket = monitor_socket(tb.plan.run_id, "monitor")  # type: ignore[union-attr]

    def ask(self, text: str) -> dict:
        answer = asyncio.run(_ask(self.socket, text))
        assert "error" not in answer, answer
        return answer

    def value(self, text: str, timeout: float = 15.0) -> object:
        """The single result of a query, waiting until the measurements are there."""
        deadline = time.monotonic() + timeout
        while True:
            answer = self.ask(text)
            if answer["rows"]:
                return answer["rows"][0][-1]
            assert time.monotonic() < deadline, answer
            time.sleep(0.5)


@pytest.fixture(scope="module")
def monitor(tmp_path_factory):
    tb = Testbed.from_yaml(ROOT / "topologies/recursive-monitor.yaml", run_root=tmp_path_factory.mktemp("mon"))
    with tb.up():
        m = Monitor(tb)
        deadline = time.monotonic() + 30
        while not m.socket.exists():
            assert time.monotonic() < deadline, Path(tb.supervisor.get("monitor").log).read_text()[-2000:]
            time.sleep(0.2)
        yield m


def test_the_leaves_of_a_network_function_are_its_vms(monitor):
    rows = monitor.ask("leaf NF1")["rows"]
    assert sorted(r[1] for r in rows) == ["vm1", "vm2", "vm3", "vm7", "vm8"]


def test_cpu_stress_on_one_vm_shows_in_max_cpu_of_its_network_function(monitor):
    idle = monitor.value("max_cpu NF1")
    monitor.tb.stress("vm8", seconds=8, workers=1)
    time.sleep(3.0)  # two sampling intervals
    busy = monitor.value("max_cpu NF1")
    mean = monitor.value("mean_cpu NF1")
    other = monitor.value("max_cpu NF2")
    top = monitor.value("top_cpu NF1")
    print(f"max_cpu NF1 idle {idle}, stressed {busy}; mean_cpu NF1 {mean}; max_cpu NF2 {other}; top {top}")
    assert idle < 0.3 and busy > 0.7, (idle, busy)
    assert 0.1 < mean < busy  # one of five VMs busy
    assert other < 0.3
    assert top[0][0] == "vm8", top


def test_link_delays_show_in_the_end_to_end_delay(monitor):
    """NF1's ingress leaves (vm2 and vm7 by the rules) to NF2's egress vm10: the domain link's
    10 ms plus vm10's link's 20 ms, one way; inside NF1 (vm7 to vm8) next to nothing."""
    e2e = monitor.value("e2e_delay NF1 NF2", timeout=30)
    inner = monitor.value("delay vm7 vm8", timeout=30)
    print(f"e2e_delay NF1 NF2 = {e2e} ms; delay vm7 vm8 = {inner} ms")
    assert 25 <= e2e <= 45, e2e
    assert inner < 5, inner
    metrics = asyncio.run(_get_metrics(monitor.socket))
    delays = {line.split("{")[1].split("}")[0]: float(line.split()[1]) for line in metrics.splitlines()
              if line.startswith("vnfpool_host_delay_ms{")}  # fmt: skip
    to_vm10 = [v for k, v in delays.items() if 'dst="vm10"' in k]
    assert to_vm10 and all(25 <= v <= 45 for v in to_vm10), delays


async def _get_metrics(socket: Path) -> str:
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(socket))) as session:
        async with session.get("http://monitor/metrics") as r:
            return await r.text()


def test_bad_queries_get_clear_errors(monitor):
    answer = asyncio.run(_ask(monitor.socket, "max_cpu(NF1"))
    assert "parse error" in answer["error"] and "column" in answer["error"], answer
    answer = asyncio.run(_ask(monitor.socket, "no_such_template NF1"))
    assert "no_such_template" in answer["error"], answer
    json.dumps(answer)
