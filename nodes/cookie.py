"""ASAP cookies sealed with a pool secret (client-based state sharing, RFC 5351/5352).

A PE hands its session state to the pool user in an ASAP_COOKIE; after a failover the PU
echoes it to the next PE of the pool (COOKIE_ECHO), which restores the session.  The PU must
neither read the state nor forge or alter it, so the cookie is encrypted and authenticated
with keys that only the pool's PEs derive from the pool secret: AES-256-CTR, then
HMAC-SHA256 over everything before the tag (encrypt-then-MAC).  The pool handle is bound into
the MAC, so a cookie of one pool is refused by another; cookies are kept within 64 KiB, the
size an ASAP message can carry.

    layout: version (1) | nonce (16) | ciphertext | tag (32)
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = 1
NONCE, TAG = 16, 32
OVERHEAD = 1 + NONCE + TAG
#: An ASAP_COOKIE is header (4) + Cookie TLV header (4) + cookie + padding <= 65535 bytes.
MAX_COOKIE = 65524
MAX_STATE = MAX_COOKIE - OVERHEAD


class CookieError(ValueError):
    """A cookie that is not ours: forged, altered, truncated, of another pool, or too large."""


class CookieSealer:
    def __init__(self, secret: bytes, pool_handle: bytes) -> None:
        if not secret:
            raise ValueError("the pool secret must not be empty")
        keys = HKDF(algorithm=hashes.SHA256(), length=64, salt=None,
                    info=b"vnfpool-testbed cookie v1|" + pool_handle).derive(secret)  # fmt: skip
        self._enc, self._mac = keys[:32], keys[32:]
        self._context = pool_handle

    def seal(self, state: bytes) -> bytes:
        if len(state) > MAX_STATE:
            raise CookieError(f"state of {len(state)} bytes exceeds the cookie limit of {MAX_STATE}")
        nonce = os.urandom(NONCE)
        encryptor = Cipher(algorithms.AES(self._enc), modes.CTR(nonce)).encryptor()
        body = bytes([VERSION]) + nonce + encryptor.update(state) + encryptor.finalize()
        return body + self._tag(body)

    def open(self, cookie: bytes) -> bytes:
        """The state inside `cookie`; CookieError if it was not sealed by this pool's secret."""
        if len(cookie) > MAX_COOKIE:
            raise CookieError(f"cookie of {len(cookie)} bytes exceeds {MAX_COOKIE}")
        if len(cookie) < OVERHEAD:
            raise CookieError(f"cookie of {len(cookie)} bytes is shorter than its {OVERHEAD}-byte envelope")
        body, tag = cookie[:-TAG], cookie[-TAG:]
        if not hmac.compare_digest(tag, self._tag(body)):
            raise CookieError("authentication failed: forged, altered, or sealed for another pool")
        if body[0] != VERSION:
            raise CookieError(f"cookie version {body[0]}, expected {VERSION}")
        decryptor = Cipher(algorithms.AES(self._enc), modes.CTR(body[1 : 1 + NONCE])).decryptor()
        return decryptor.update(body[1 + NONCE :]) + decryptor.finalize()

    def _tag(self, body: bytes) -> bytes:
        return hmac.new(self._mac, self._context + b"|" + body, hashlib.sha256).digest()
