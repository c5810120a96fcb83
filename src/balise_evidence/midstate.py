"""SHA-256 whose running state can be saved and taken up again (FIPS 180-4).

The close record carries the SHA-256 of the whole stream. A recording taken up again
after a restart must go on hashing where it stopped, and ``hashlib`` cannot export its
state: this one can (``state()`` / ``from_state()``). Pure Python, so slow (some
hundred kilobytes a second), which is ample for 24 kb/s (3 kB/s) of audio; the digest is checked
against ``hashlib`` by the tests.
"""

from __future__ import annotations

import struct
from typing import Any

from .canonical import b64d, b64e

_K = (
    0x428A2F98, 0x71374491, 0xB5C0FBCF, 0xE9B5DBA5, 0x3956C25B, 0x59F111F1, 0x923F82A4, 0xAB1C5ED5,
    0xD807AA98, 0x12835B01, 0x243185BE, 0x550C7DC3, 0x72BE5D74, 0x80DEB1FE, 0x9BDC06A7, 0xC19BF174,
    0xE49B69C1, 0xEFBE4786, 0x0FC19DC6, 0x240CA1CC, 0x2DE92C6F, 0x4A7484AA, 0x5CB0A9DC, 0x76F988DA,
    0x983E5152, 0xA831C66D, 0xB00327C8, 0xBF597FC7, 0xC6E00BF3, 0xD5A79147, 0x06CA6351, 0x14292967,
    0x27B70A85, 0x2E1B2138, 0x4D2C6DFC, 0x53380D13, 0x650A7354, 0x766A0ABB, 0x81C2C92E, 0x92722C85,
    0xA2BFE8A1, 0xA81A664B, 0xC24B8B70, 0xC76C51A3, 0xD192E819, 0xD6990624, 0xF40E3585, 0x106AA070,
    0x19A4C116, 0x1E376C08, 0x2748774C, 0x34B0BCB5, 0x391C0CB3, 0x4ED8AA4A, 0x5B9CCA4F, 0x682E6FF3,
    0x748F82EE, 0x78A5636F, 0x84C87814, 0x8CC70208, 0x90BEFFFA, 0xA4506CEB, 0xBEF9A3F7, 0xC67178F2,
)
_H0 = (0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19)
_M = 0xFFFFFFFF


def _rotr(x: int, n: int) -> int:
    return ((x >> n) | (x << (32 - n))) & _M


def _compress(h: list[int], block: bytes) -> None:
    w = list(struct.unpack(">16I", block))
    for i in range(16, 64):
        s0 = _rotr(w[i - 15], 7) ^ _rotr(w[i - 15], 18) ^ (w[i - 15] >> 3)
        s1 = _rotr(w[i - 2], 17) ^ _rotr(w[i - 2], 19) ^ (w[i - 2] >> 10)
        w.append((w[i - 16] + s0 + w[i - 7] + s1) & _M)
    a, b, c, d, e, f, g, hh = h
    for i in range(64):
        t1 = (hh + (_rotr(e, 6) ^ _rotr(e, 11) ^ _rotr(e, 25)) + ((e & f) ^ (~e & g)) + _K[i] + w[i]) & _M
        t2 = ((_rotr(a, 2) ^ _rotr(a, 13) ^ _rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) & _M
        a, b, c, d, e, f, g, hh = (t1 + t2) & _M, a, b, c, (d + t1) & _M, e, f, g
    for i, v in enumerate((a, b, c, d, e, f, g, hh)):
        h[i] = (h[i] + v) & _M


class ResumableSha256:
    def __init__(self) -> None:
        self._h = list(_H0)
        self._tail = b""  # the bytes of an incomplete block
        self._length = 0

    def update(self, data: bytes) -> None:
        self._length += len(data)
        buf = self._tail + data
        whole = len(buf) - len(buf) % 64
        for pos in range(0, whole, 64):
            _compress(self._h, buf[pos:pos + 64])
        self._tail = buf[whole:]

    def hexdigest(self) -> str:
        h = list(self._h)
        pad = b"\x80" + b"\x00" * ((55 - self._length) % 64) + struct.pack(">Q", self._length * 8)
        buf = self._tail + pad
        for pos in range(0, len(buf), 64):
            _compress(h, buf[pos:pos + 64])
        return struct.pack(">8I", *h).hex()

    def state(self) -> dict[str, Any]:
        return {"h": list(self._h), "tail": b64e(self._tail), "length": self._length}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ResumableSha256:
        hasher = cls()
        h, tail, length = state["h"], b64d(state["tail"]), state["length"]
        if (len(h) != 8 or not all(isinstance(x, int) and 0 <= x <= _M for x in h) or len(tail) >= 64
                or not isinstance(length, int) or length % 64 != len(tail)):
            raise ValueError("not a SHA-256 state")
        hasher._h, hasher._tail, hasher._length = list(h), tail, length
        return hasher
