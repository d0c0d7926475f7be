"""The monitor's time-series store and its Prometheus exposition, with explicit times; and the
pure arithmetic of the collectors (CPU deltas, /proc and ping parsing)."""

from __future__ import annotations

import threading

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor import collectors, exposition
from monitor.collectors import CPU_METRIC, DELAY_METRIC
from monitor.tsdb import Sample, Store


def test_latest_is_none_once_older_than_the_freshness_window():
    store = Store(freshness=10.0)
    store.add("cpu", "vm1", 0.5, t=100.0)
    assert store.latest("cpu", "vm1", now=110.0) == Sample(100.0, 0.5)
    assert store.latest("cpu", "vm1", now=110.1) is None
    assert store.latest_any("cpu", "vm1") == Sample(100.0, 0.5)  # stale, not missing
    assert store.latest("cpu", "vm2", now=100.0) is None and store.latest_any("cpu", "vm2") is None


def test_a_single_label_string_is_a_one_tuple():
    store = Store()
    store.add("cpu", "vm1", 1.0, t=1.0)
    assert store.latest_any("cpu", ("vm1",)) == Sample(1.0, 1.0)
    assert store.labels("cpu") == [("vm1",)]


def test_latest_is_the_newest_even_when_samples_arrive_out_of_order():
    store = Store()
    store.add("delay", ("a", "b"), 20.0, t=5.0)
    store.add("delay", ("a", "b"), 19.0, t=3.0)  # a probe that finished late
    assert store.latest("delay", ("a", "b"), now=6.0) == Sample(5.0, 20.0)
    assert [s.t for s in store.series("delay", ("a", "b"))] == [3.0, 5.0]


def test_series_since_and_retention():
    store = Store(freshness=5.0, retention=30.0)
    for t in range(0, 100, 10):
        store.add("cpu", "vm1", t / 100, t=float(t))
    assert [s.t for s in store.series("cpu", "vm1")] == [60.0, 70.0, 80.0, 90.0]  # 90 - 30 = 60 kept
    assert [s.t for s in store.series("cpu", "vm1", since=75.0)] == [80.0, 90.0]
    assert store.series("cpu", "nobody", since=0.0) == []


def test_prune_forgets_series_nobody_writes_any_more():
    store = Store(freshness=5.0, retention=30.0)
    store.add("cpu", "gone", 1.0, t=0.0)
    store.add("cpu", "alive", 1.0, t=50.0)
    assert store.prune(now=60.0) == 1
    assert store.labels("cpu") == [("alive",)] and store.metrics() == ["cpu"]


def test_retention_never_drops_a_fresh_sample():
    store = Store(freshness=20.0, retention=5.0)
    store.add("cpu", "vm1", 1.0, t=0.0)
    store.add("cpu", "vm1", 1.0, t=15.0)
    assert len(store.series("cpu", "vm1")) == 2


def test_a_series_holds_at_most_max_samples():
    store = Store(retention=1e9, max_samples=50)
    for t in range(1000):
        store.add("cpu", "vm1", 0.0, t=float(t))
    kept = store.series("cpu", "vm1")
    assert len(kept) == 50 and kept[0].t == 950.0 and len(store) == 50


def test_metrics_lists_names_sorted():
    store = Store()
    store.add("b", "x", 1.0, t=0.0)
    store.add("a", ("x", "y"), 1.0, t=0.0)
    assert store.metrics() == ["a", "b"]


def test_default_times_come_from_the_clock():
    now = [1000.0]
    store = Store(freshness=1.0, clock=lambda: now[0])
    store.add("cpu", "vm1", 0.3)
    assert store.latest("cpu", "vm1") == Sample(1000.0, 0.3)
    now[0] = 1002.0
    assert store.latest("cpu", "vm1") is None


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError):
        Store(freshness=0)
    with pytest.raises(ValueError):
        Store(max_samples=0)


def test_concurrent_writers_and_readers_lose_nothing_and_stay_ordered():
    store = Store(retention=1e9, max_samples=10_000)
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        for i in range(2000):
            store.add("cpu", f"vm{worker % 2}", float(i), t=float(i * 8 + worker))

    def read() -> None:
        try:
            for _ in range(500):
                for labels in store.labels("cpu"):
                    times = [s.t for s in store.series("cpu", labels)]
                    assert times == sorted(times)
                    store.latest("cpu", labels, now=0.0)
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)] + [threading.Thread(target=read)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert len(store) == 8 * 2000
    assert len(store.series("cpu", "vm0")) == 4 * 2000


# -- exposition -----------------------------------------------------------------------------------


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_exposition_parses_with_prometheus_client_and_carries_ms_timestamps():
    store = Store(clock=lambda: 1_700_000_010.0)
    store.add(CPU_METRIC, "vm1", 0.12, t=1_700_000_000.5)
    store.add(CPU_METRIC, "vm2", 2.0, t=1_700_000_001.0)
    store.add(DELAY_METRIC, ("vm7", "vm10"), 20.4, t=1_700_000_002.25)
    text = exposition.render(store)
    assert "# TYPE vnfpool_host_cpu_ratio gauge" in text and "# HELP vnfpool_host_delay_ms " in text
    assert 'vnfpool_host_cpu_ratio{host="vm1"} 0.12 1700000000500' in text
    found = families(text)
    cpu = {s.labels["host"]: s for s in found["vnfpool_host_cpu_ratio"].samples}
    assert cpu["vm1"].value == 0.12 and cpu["vm2"].value == 2.0
    assert cpu["vm1"].timestamp == pytest.approx(1_700_000_000.5)
    (delay,) = found["vnfpool_host_delay_ms"].samples
    assert delay.labels == {"src": "vm7", "dst": "vm10"} and delay.value == 20.4
    assert found["vnfpool_host_delay_ms"].type == "gauge"


def test_exposition_hides_stale_samples_unless_asked():
    store = Store(freshness=10.0, clock=lambda: 100.0)
    store.add(CPU_METRIC, "fresh", 0.5, t=95.0)
    store.add(CPU_METRIC, "stale", 0.5, t=50.0)
    hosts = {s.labels["host"] for s in families(exposition.render(store))["vnfpool_host_cpu_ratio"].samples}
    assert hosts == {"fresh"}
    every = families(exposition.render(store, include_stale=True))["vnfpool_host_cpu_ratio"].samples
    assert {s.labels["host"] for s in every} == {"fresh", "stale"}


def test_exposition_escapes_labels_and_exposes_unknown_metrics_generically():
    store = Store(clock=lambda: 10.0)
    store.add("queue_depth", ('pe"1', "x\\y"), 3.0, t=9.0)
    (sample,) = families(exposition.render(store))["vnfpool_queue_depth"].samples
    assert sample.labels == {"l1": 'pe"1', "l2": "x\\y"} and sample.value == 3.0


def test_an_empty_store_exposes_nothing():
    assert exposition.render(Store()) == ""


# -- the collectors' arithmetic -------------------------------------------------------------------


def test_parse_stat_counts_fields_after_the_last_parenthesis():
    fields = ["S"] + ["0"] * 10 + ["120", "30"] + ["0"] * 6 + ["5000"] + ["0"] * 30
    line = "4242 (weird) name (x)) " + " ".join(fields)
    assert collectors.parse_stat(line) == (5000, 150)


def test_ticks_delta_handles_new_gone_reused_and_joined_processes():
    before = {(1, 100): 50, (2, 100): 70, (3, 100): 10}
    after = {
        (1, 100): 80,  # +30
        # (2, 100) exited: its last partial interval is lost, nothing negative
        (3, 900): 5,  # pid 3 reused by a process started after the first scan: all of it, +5
        (4, 950): 40,  # new since the first scan: +40
        (5, 10): 999,  # old process that only now appears in the namespace: baseline, +0
    }
    assert collectors.ticks_delta(before, after, since_tick=800) == 75
    assert collectors.ticks_delta({(1, 1): 90}, {(1, 1): 80}, since_tick=0) == 0  # never negative


def test_parse_ping_reads_every_reply_time():
    out = """PING 10.1.1.11 (10.1.1.11) 56(84) bytes of data.
64 bytes from 10.1.1.11: icmp_seq=1 ttl=64 time=40.3 ms
64 bytes from 10.1.1.11: icmp_seq=2 ttl=64 time=41 ms
64 bytes from 10.1.1.11: icmp_seq=3 ttl=64 time<0.1 ms

--- 10.1.1.11 ping statistics ---
3 packets transmitted, 3 received, 0% packet loss, time 201ms
rtt min/avg/max/mdev = 0.1/27.1/41.0/19.1 ms
"""
    assert collectors.parse_ping(out) == [40.3, 41.0, 0.1]
    argv = collectors.ping_argv(77, "10.1.1.11", 3, 0.1, 1.0)
    assert argv[:3] == ["mnexec", "-a", "77"] and "-U" in argv and argv[-1] == "10.1.1.11"


def test_cgroup_usage_is_preferred_where_given(tmp_path):
    usage = tmp_path / "cpuacct.usage"
    usage.write_text("1000000000\n")
    sampler = collectors.CpuSampler(cgroups={"vm1": str(tmp_path)})
    me = collectors.os.getpid()  # any live pid: the cgroup, not the namespace, is counted
    assert sampler.sample({"vm1": me}) == {}
    usage.write_text("1500000000\n")
    (ratio,) = sampler.sample({"vm1": me}).values()
    assert ratio > 0  # 0.5 CPU-seconds over the (short) wall time between the calls


def test_collector_refuses_unknown_pairs():
    c = collectors.Collector(Store(), {"a": 1, "b": 2}, {"b": "10.0.0.2"})
    with pytest.raises(KeyError, match="no host 'z'"):
        c.watch("a", "z")
    with pytest.raises(KeyError, match="no address"):
        c.watch("b", "a")
    c.watch("a", "b")
    assert c.watched() == [("a", "b")]
