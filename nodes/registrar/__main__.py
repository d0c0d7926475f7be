"""`python -m nodes.registrar --config FILE` (or flags): see nodes.registrar.server."""

import asyncio
import sys

from nodes.registrar.server import run

if __name__ == "__main__":
    sys.exit(asyncio.run(run()))
