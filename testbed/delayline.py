"""A userspace delay line: holds NFQUEUE'd packets for a delay (± uniform jitter), then
lets them go.  It is the testbed's replacement for netem's delay on kernels without sch_netem.

    python -m testbed.delayline --queue 1:20:0 --queue 2:10:2     # queue:delay_ms:jitter_ms

Packets are queued by iptables rules (see `testbed.shaping`); the verdict is given later
from one loop over all queues, never inside the callback, so one held packet never holds up
another.  Jitter, as netem's, may reorder packets.  SIGTERM/SIGINT accept whatever is still
held and unbind.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import random
import select
import signal
import sys
import time
from dataclasses import dataclass

from netfilterqueue import COPY_META, NetfilterQueue


@dataclass(frozen=True)
class QueueSpec:
    number: int
    delay_ms: float
    jitter_ms: float


def parse_queue(text: str) -> QueueSpec:
    try:
        number, delay, jitter = text.split(":")
        spec = QueueSpec(int(number), float(delay), float(jitter))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected QUEUE:DELAY_MS:JITTER_MS, e.g. 1:20:0") from None
    if not 0 <= spec.number <= 65535 or spec.delay_ms < 0 or spec.jitter_ms < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: queue 0-65535, delay and jitter >= 0")
    return spec


class DelayLine:
    def __init__(self, specs: list[QueueSpec], seed: int | None = None):
        self.random = random.Random(seed)
        self.held: list[tuple[float, int, object]] = []  # (due, sequence, packet)
        self.sequence = itertools.count()
        self.count = 0
        self.queues: list[NetfilterQueue] = []
        for spec in specs:
            nfq = NetfilterQueue()
            nfq.bind(spec.number, self._holder(spec), max_len=10000, mode=COPY_META)
            self.queues.append(nfq)

    def _holder(self, spec: QueueSpec):
        def hold(packet) -> None:
            jitter = self.random.uniform(-spec.jitter_ms, spec.jitter_ms) if spec.jitter_ms else 0.0
            due = time.monotonic() + max(0.0, spec.delay_ms + jitter) / 1000.0
            heapq.heappush(self.held, (due, next(self.sequence), packet))
            self.count += 1

        return hold

    def release_due(self) -> None:
        now = time.monotonic()
        while self.held and self.held[0][0] <= now:
            heapq.heappop(self.held)[2].accept()

    def run(self, stop: list[bool]) -> None:
        fds = {nfq.get_fd(): nfq for nfq in self.queues}
        while not stop:
            timeout = max(0.0, self.held[0][0] - time.monotonic()) if self.held else 0.5
            try:
                ready, _, _ = select.select(list(fds), [], [], timeout)
            except InterruptedError:
                continue
            for fd in ready:
                fds[fd].run(block=False)
            self.release_due()

    def close(self) -> None:
        while self.held:
            heapq.heappop(self.held)[2].accept()
        for nfq in self.queues:
            nfq.unbind()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m testbed.delayline", description=__doc__.split("\n")[0])
    parser.add_argument("--queue", type=parse_queue, action="append", required=True,
                        help="QUEUE:DELAY_MS:JITTER_MS (repeatable)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=None, help="jitter seed, for reproducible runs")
    args = parser.parse_args(argv)
    stop: list[bool] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.append(True))
    line = DelayLine(args.queue, args.seed)
    described = ", ".join(f"queue {q.number}: {q.delay_ms:g} ms ± {q.jitter_ms:g} ms" for q in args.queue)
    print(f"delayline: {described}", file=sys.stderr, flush=True)
    try:
        line.run(stop)
    finally:
        line.close()
        print(f"delayline: {line.count} packets delayed", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
