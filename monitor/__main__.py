"""`python -m monitor`: the monitor process (see monitor.service)."""

import asyncio
import sys

from monitor.service import run

sys.exit(asyncio.run(run()))
