"""`python -m sdn.steering --config FILE`: run the SFC steering app under os-ken.

os-ken has no manager script; its AppManager runs the app (and the OpenFlow handler it
requires) with the listening address and port from the testbed's config.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sdn.steering", description=__doc__)
    p.add_argument("--config", type=Path, required=True, help="JSON config written by the testbed")
    args = p.parse_args(argv)
    try:
        config = json.loads(args.config.read_text())
        listen = config["openflow"]
    except (OSError, ValueError, KeyError) as exc:
        p.error(f"--config {args.config}: {exc}")
    os.environ["VTB_STEERING_CONFIG"] = str(args.config.resolve())
    from os_ken import cfg
    from os_ken.base.app_manager import AppManager

    cfg.CONF(args=[], project="os_ken", default_config_files=[])
    cfg.CONF.set_override("ofp_listen_host", listen.get("host", "127.0.0.1"))
    cfg.CONF.set_override("ofp_tcp_listen_port", int(listen["port"]))
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # threads: nothing to flush, the switches keep their rules
    AppManager.run_apps(["sdn.steering.app"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
