"""What this kernel and machine offer for RSerPool transports, found out at run time.

Each probe tries the real thing (open a socket, load the library) rather than reading
version numbers, because containers and minimal kernels differ from what `uname` suggests.
A probe returns `(available, reason)` so that a caller can say *why* something is missing.
"""

from __future__ import annotations

import ctypes.util
import errno
import functools
import os
import socket

IPPROTO_MPTCP = getattr(socket, "IPPROTO_MPTCP", 262)
USRSCTP_SONAMES = ("libusrsctp.so.2", "libusrsctp.so.1", "libusrsctp.so")


@functools.cache
def kernel_sctp() -> tuple[bool, str]:
    """Whether `socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP)` works in this namespace."""
    return _try_socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP, "kernel SCTP")


@functools.cache
def mptcp() -> tuple[bool, str]:
    """Whether the kernel accepts IPPROTO_MPTCP stream sockets (and net.mptcp.enabled is on)."""
    ok, reason = _try_socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP, "MPTCP")
    if not ok:
        return ok, reason
    try:
        with open("/proc/sys/net/mptcp/enabled") as f:
            if f.read().strip() == "0":
                return False, "MPTCP: the kernel has it, but net.mptcp.enabled is 0"
    except OSError:
        pass
    return True, reason


@functools.cache
def usrsctp_library() -> str | None:
    """The file name of a loadable libusrsctp (Debian's libusrsctp2), or None."""
    for name in (*USRSCTP_SONAMES, ctypes.util.find_library("usrsctp")):
        if not name:
            continue
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return name
    return None


def usrsctp() -> tuple[bool, str]:
    """Whether the userland SCTP stack can run: the library loads and raw sockets open."""
    lib = usrsctp_library()
    if lib is None:
        return False, "userland SCTP: libusrsctp not found (Debian package libusrsctp2)"
    ok, reason = _try_socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_SCTP, "raw IP sockets")
    if not ok:
        return False, f"userland SCTP: {lib} loads, but {reason} (raw-IP mode needs CAP_NET_RAW)"
    return True, f"userland SCTP: {lib}, raw-IP mode"


def _try_socket(family: int, kind: int, proto: int, what: str) -> tuple[bool, str]:
    try:
        socket.socket(family, kind, proto).close()
    except OSError as exc:
        name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        return False, f"{what}: socket() failed with {name} ({os.strerror(exc.errno or 0)})"
    return True, f"{what}: available"
