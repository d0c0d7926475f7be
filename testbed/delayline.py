"""A userspace delay line: holds NFQUEUE'd packets for a delay (± uniform jitter), then
lets them go.  It is the testbed's replacement for netem's delay on kernels without sch_netem.

    python -m testbed.delayline --queue 1:20:0 --queue 2:10:2     # queue:delay_ms:jitter_ms

Packets are queued by iptables rules (see `testbed.shaping`).  The verdict is given later,
from one loop over all queues, never inside the callback, so that one held packet never
holds up another: netfilterqueue (>= 1.0) lets a Packet be accepted after its callback has
returned.  Jitter, as netem's, may reorder packets.  SIGTERM/SIGINT accept whatever is
still held, unbind and print the counters.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import os
import random
import select
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from netfilterqueue import COPY_META, NetfilterQueue, Packet

MAX_LEN = 10000  # kernel-side queue length: enough for 1 s of a busy 100 Mbit/s link
IDLE_TIMEOUT = 1.0  # s; only bounds the wait when nothing is held (signals wake us anyway)


@dataclass(frozen=True)
class QueueSpec:
    number: int
    delay_ms: float
    jitter_ms: float


def parse_queue(text: str) -> QueueSpec:
    """`3:20:1.5` -> queue 3, 20 ms ± 1.5 ms; an argparse type, so errors read as usage errors."""
    try:
        number, delay, jitter = text.split(":")
        spec = QueueSpec(int(number), float(delay), float(jitter))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected QUEUE:DELAY_MS:JITTER_MS, e.g. 1:20:0"
        ) from None
    if not 0 <= spec.number <= 65535 or spec.delay_ms < 0 or spec.jitter_ms < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: queue 0-65535, delay and jitter >= 0")
    return spec


class DelayLine:
    """All queues of one namespace, and the packets they hold, ordered by due time."""

    def __init__(self, specs: list[QueueSpec], seed: int | None = None) -> None:
        self.random = random.Random(seed)
        self.held: list[tuple[float, int, Packet]] = []  # (due, sequence, packet): a min-heap
        self.sequence = itertools.count()  # ties broken in arrival order; Packets don't compare
        self.delayed: Counter[int] = Counter()
        self.queues: list[NetfilterQueue] = []
        try:
            for spec in specs:
                nfq = NetfilterQueue()
                self.queues.append(nfq)
                # COPY_META: only the verdict is needed, so no payload is copied to user space.
                nfq.bind(spec.number, self._holder(spec), max_len=MAX_LEN, mode=COPY_META)
        except BaseException:
            self.close()
            raise

    def _holder(self, spec: QueueSpec) -> Callable[[Packet], None]:
        def hold(packet: Packet) -> None:
            jitter = self.random.uniform(-spec.jitter_ms, spec.jitter_ms) if spec.jitter_ms else 0.0
            due = time.monotonic() + max(0.0, spec.delay_ms + jitter) / 1000.0
            heapq.heappush(self.held, (due, next(self.sequence), packet))
            self.delayed[spec.number] += 1

        return hold

    def release_due(self) -> None:
        now = time.monotonic()
        while self.held and self.held[0][0] <= now:
            heapq.heappop(self.held)[2].accept()

    def run(self, wakeup: int) -> None:
        """Until a signal writes to `wakeup`: read every ready queue, release what is due."""
        fds = {nfq.get_fd(): nfq for nfq in self.queues}
        watched = [*fds, wakeup]
        while True:
            timeout = max(0.0, self.held[0][0] - time.monotonic()) if self.held else IDLE_TIMEOUT
            ready, _, _ = select.select(watched, [], [], timeout)
            if wakeup in ready:
                return
            for fd in ready:
                fds[fd].run(block=False)  # drains the socket, one callback per packet
            self.release_due()

    def close(self) -> int:
        """Accept everything still held (never drop on the way out), unbind; return how many."""
        flushed = len(self.held)
        while self.held:
            heapq.heappop(self.held)[2].accept()
        for nfq in self.queues:
            nfq.unbind()
        self.queues.clear()
        return flushed


def _prioritise() -> str:
    """Run ahead of the emulated nodes: a delay line that waits for a core releases packets
    late (seen: 35 ms for a 10 ms link, 90 ms for a 50 ms path, while a dozen node processes
    started on two cores).  It sleeps in select() and does little per packet, so a real-time
    priority costs the others almost nothing; the kernel's RT throttling bounds it anyway."""
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))
        return "scheduling SCHED_RR 1"
    except (OSError, AttributeError):
        pass
    try:
        os.nice(-10)
        return "scheduling nice -10"
    except OSError as exc:
        return f"scheduling unchanged ({exc.strerror})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.delayline", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--queue",
        type=parse_queue,
        action="append",
        required=True,
        help="QUEUE:DELAY_MS:JITTER_MS (repeatable)",
    )
    parser.add_argument("--seed", type=int, default=None, help="jitter seed, for reproducible runs")
    args = parser.parse_args(argv)
    numbers = [q.number for q in args.queue]
    if len(set(numbers)) != len(numbers):
        parser.error("each queue number may be given once")

    # A signal only writes a byte to this pipe, which the select loop watches: no work in the
    # handler, and no waiting out a select timeout before stopping.
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)

    try:
        line = DelayLine(args.queue, args.seed)
    except OSError as e:
        print(f"delayline: cannot bind queues {numbers}: {e} (root? queue taken?)", file=sys.stderr)
        return 1
    described = ", ".join(f"queue {q.number}: {q.delay_ms:g} ms ± {q.jitter_ms:g} ms" for q in args.queue)
    priority = _prioritise()
    print(f"delayline: pid {os.getpid()}, {described}, {priority}", file=sys.stderr, flush=True)
    try:
        line.run(read_end)
    finally:
        flushed = line.close()
        counts = ", ".join(f"queue {n}: {line.delayed[n]}" for n in numbers)
        total = sum(line.delayed.values())
        print(f"delayline: {total} packets delayed ({counts}), {flushed} released at exit", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
