"""The monitor's collectors against a real testbed: CPU per host, delay per pair, staleness.

One domain, three hosts; `far` reaches the network through a 20 ms link (20 ms each way, so
40 ms of RTT and 20 ms one way).  A busy loop in one host must show in its CPU ratio and in
nobody else's; the probed delay across the shaped link must read about 20 ms, a local one a
fraction of a millisecond; and once the collector stops, its figures must stop answering.
"""

from __future__ import annotations

import statistics
import time

import pytest

from monitor.collectors import CPU_METRIC, DELAY_METRIC, LOSS_METRIC, Collector
from monitor.tsdb import Store
from testbed import schema
from testbed.api import Testbed
from tests.netlab import needs_root

pytestmark = [pytest.mark.netns, needs_root]

LAB = """
name: monlab
domains:
  D1:
    hosts:
      near1: {}
      near2: {}
      far: {interfaces: [{network: a, delay: 20ms}]}
"""
FRESHNESS = 2.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tb = Testbed(schema.parse(LAB), run_root=tmp_path_factory.mktemp("runs"))
    with tb.up():
        yield tb


@pytest.fixture(scope="module")
def collector(lab):
    store = Store(freshness=FRESHNESS, retention=120.0)
    c = Collector.from_testbed(lab, store, interval=0.5, pairs=[("near1", "far")], probe_interval=1.0)
    with c:
        yield c


def wait_for(predicate, timeout: float, step: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def cpu(c: Collector, host: str) -> float | None:
    sample = c.store.latest(CPU_METRIC, host)
    return None if sample is None else sample.value


def test_a_busy_loop_raises_its_hosts_cpu_and_nobody_elses(lab, collector):
    assert wait_for(lambda: cpu(collector, "near1") is not None, 3.0)
    lab.stress("near2", seconds=6, workers=1)
    assert wait_for(lambda: (cpu(collector, "near2") or 0) > 0.7, 5.0), collector.store.series(
        CPU_METRIC, "near2"
    )
    time.sleep(1.5)
    since = time.time() - 1.5
    loaded = [s.value for s in collector.store.series(CPU_METRIC, "near2", since)]
    quiet = [s.value for s in collector.store.series(CPU_METRIC, "near1", since)]
    print(f"near2 under stress: {loaded}; near1: {quiet}")
    assert statistics.median(loaded) > 0.7 and max(loaded) < 1.3, loaded  # one loop: one CPU, not more
    assert max(quiet) < 0.2, quiet


def test_delay_across_the_20ms_link_reads_20ms_one_way(lab, collector):
    assert wait_for(lambda: len(collector.store.series(DELAY_METRIC, ("near1", "far"))) >= 4, 10.0)
    values = [s.value for s in collector.store.series(DELAY_METRIC, ("near1", "far"))]
    print(f"near1 -> far, one way (ms): {values}")
    assert 15 <= statistics.median(values) <= 30, values
    assert collector.store.latest(LOSS_METRIC, ("near1", "far")).value == 0.0


def test_a_pair_never_probed_is_probed_on_demand(lab, collector):
    assert collector.store.latest_any(DELAY_METRIC, ("near1", "near2")) is None
    first = collector.probe_now("near1", "near2", timeout=5.0)
    assert first is not None and first.value < 5, first
    values = [first.value]
    for _ in range(2):
        time.sleep(collector.min_probe_gap)
        sample = collector.probe_now("near1", "near2", timeout=5.0)
        assert sample is not None
        values.append(sample.value)
    print(f"near1 -> near2, one way (ms): {values}")
    assert statistics.median(values) < 5, values
    # from the shaped host itself, `ping -U` still sees both halves of the delay line
    back = collector.probe_now("far", "near1", timeout=5.0)
    print(f"far -> near1, one way (ms): {back}")
    assert back is not None and 15 <= back.value <= 30, back
    assert ("near1", "near2") in collector.watched()


def test_within_the_rate_limit_the_previous_probe_answers(collector):
    a = collector.probe_now("near2", "near1", timeout=5.0)
    b = collector.probe_now("near2", "near1", timeout=5.0)
    assert a is not None and b == a  # no second burst within min_probe_gap


def test_after_stop_measurements_go_stale(collector):
    collector.stop()
    assert not collector.running
    time.sleep(FRESHNESS + 0.5)
    for metric, labels in ((CPU_METRIC, ("near1",)), (DELAY_METRIC, ("near1", "far"))):
        assert collector.store.latest(metric, labels) is None
        assert collector.store.latest_any(metric, labels) is not None  # stale, not missing
