"""The same scenario mixed with RSPLIB, the reference implementation, where it can run.

RSPLIB's programs (Debian's rsplib-registrar, rsplib-services, rsplib-tools) use kernel SCTP
only, so this runs where the kernel has SCTP; everywhere else it is skipped with the reason.
In one domain: RSPLIB's rspregistrar and ours; our PE registers at rspregistrar and our PU
resolves it there; rspserver (RSPLIB's echo PE) registers at our registrar and our PU
resolves it; RSPLIB's rspterminal (a PU) reaches our echo PE through our registrar.
"""

from __future__ import annotations

import json
import shutil
import sys
import time

import pytest

from nodes.transport import backend_status
from nodes.transport.base import Backend
from testbed import schema
from testbed.api import Testbed
from tests.netlab import needs_root

KERNEL_SCTP, WHY_NOT = backend_status()[Backend.KERNEL_SCTP]
MISSING = [tool for tool in ("rspregistrar", "rspserver", "rspterminal") if not shutil.which(tool)]

pytestmark = [
    pytest.mark.netns,
    needs_root,
    pytest.mark.skipif(not KERNEL_SCTP, reason=f"RSPLIB needs kernel SCTP: {WHY_NOT}"),
    pytest.mark.skipif(bool(MISSING), reason=f"RSPLIB's programs are not installed: {', '.join(MISSING)}"),
]

# Addresses follow the plan: network a of the first domain is 10.1.1.0/24, hosts from .10 in order.
RSP_REG, OUR_REG = "10.1.1.10", "10.1.1.11"
TOPOLOGY = f"""
name: rsplib-mix
domains:
  D1:
    networks: [a]
    hosts:
      rspreg:
        processes:
          - command: {{name: rspregistrar, command: "rspregistrar -asap={RSP_REG}:3863 -enrp={RSP_REG}:9901 -asapannounce=off -enrpannounce=off -minaddressscope=sitelocal -quiet"}}
      ourreg:
        processes:
          - registrar: {{name: registrar, options: {{backend: kernel-sctp, no-announce: true}}}}
      ourpe:
        processes:
          - pool-element: {{name: at-rsplib, handle: OurAtRsplib, options: {{backend: kernel-sctp, registrar: "{RSP_REG}:3863", pe-id: "0x4242"}}}}
          - pool-element: {{name: at-ours, handle: OurEcho, service: echo, options: {{backend: kernel-sctp, registrar: "{OUR_REG}:3863", pe-id: "0x4343"}}}}
      rsppe:
        processes:
          - command: {{name: rspserver, command: "rspserver -echo -poolhandle=RspEcho -registrar={OUR_REG}:3863 -quiet"}}
      pu: {{}}
"""


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    tb = Testbed(schema.parse(TOPOLOGY), run_root=tmp_path_factory.mktemp("rsplib"))
    with tb.up():
        time.sleep(5)  # registrations at both registrars
        yield tb


def resolve(tb: Testbed, registrar: str, handle: str) -> dict:
    argv = [sys.executable, "-m", "nodes.pu", "--backend", "kernel-sctp", "--registrar", f"{registrar}:3863",
            "resolve", handle, "--json", "--items", "8"]  # fmt: skip
    result = tb.exec("pu", argv, timeout=30)
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_our_pe_registers_at_rspregistrar_and_our_pu_resolves_it(mixed):
    result = resolve(mixed, RSP_REG, "OurAtRsplib")
    assert result["error"] is None, result
    assert [p["pe_id"] for p in result["pool_elements"]] == ["0x00004242"]


def test_rspserver_registers_at_our_registrar(mixed):
    result = resolve(mixed, OUR_REG, "RspEcho")
    assert result["error"] is None and len(result["pool_elements"]) == 1, result
    assert result["pool_elements"][0]["transport"] == "sctp"


def test_rspterminal_reaches_our_echo_pe_through_our_registrar(mixed):
    argv = ["sh", "-c", f"(echo interop-line; sleep 3) | timeout 15 rspterminal -poolhandle=OurEcho -registrar={OUR_REG}:3863"]
    result = mixed.exec("pu", argv, timeout=30)
    assert "interop-line" in result.stdout, result.stdout + result.stderr  # rspterminal prints what comes back
