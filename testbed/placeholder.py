"""Stand-in for a node program that does not exist yet: it logs its config and waits.

It is started only when the real module is missing, and the supervisor marks the process as
a placeholder in `status`, so nobody mistakes it for a running registrar.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kind", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--reason", default="not implemented")
    args = parser.parse_args()
    with open(args.config) as f:
        config = json.load(f)
    print(json.dumps({"event": "placeholder", "kind": args.kind, "reason": args.reason,
                      "name": config.get("name"), "addresses": config.get("addresses")}), flush=True)  # fmt: skip
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
