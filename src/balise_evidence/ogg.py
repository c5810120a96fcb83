"""Ogg page framing (RFC 3533) and the segmenter that cuts a stream at page boundaries.

The segmenter is fed the Ogg Opus byte stream as the muxer produces it and hands back
segments made of whole pages, so that the segments joined together are byte for byte
the stream. Opus granule positions count 48 kHz samples (RFC 7845), whatever the input
rate, which gives the audio time of every cut.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

CAPTURE = b"OggS"
HEADER = struct.Struct("<4sBBqIIIB")  # capture, version, type, granule, serial, seqno, crc, nsegs
OPUS_GRANULE_RATE = 48_000


class OggError(ValueError):
    pass


@dataclass(frozen=True)
class Page:
    data: bytes
    granule: int
    serial: int
    seqno: int
    header_type: int

    @property
    def eos(self) -> bool:
        return bool(self.header_type & 0x04)


def page_length(buf: bytes | bytearray, start: int = 0) -> int | None:
    """Length of the page starting at ``start``, or None while it is incomplete."""
    if len(buf) - start < HEADER.size:
        return None
    if buf[start : start + 4] != CAPTURE:
        raise OggError(f"no Ogg capture pattern at byte {start}")
    nsegs = buf[start + 26]
    if len(buf) - start < HEADER.size + nsegs:
        return None
    body = sum(buf[start + HEADER.size : start + HEADER.size + nsegs])
    total = HEADER.size + nsegs + body
    return total if len(buf) - start >= total else None


def parse_page(data: bytes) -> Page:
    capture, version, header_type, granule, serial, seqno, _crc, _n = HEADER.unpack_from(data)
    if capture != CAPTURE or version != 0:
        raise OggError("not an Ogg page")
    return Page(bytes(data), granule, serial, seqno, header_type)


def iter_pages(stream: bytes):
    """Every page of a complete stream; OggError if it does not split into whole pages."""
    pos = 0
    while pos < len(stream):
        n = page_length(stream, pos)
        if n is None:
            raise OggError(f"truncated Ogg page at byte {pos}")
        yield parse_page(stream[pos : pos + n])
        pos += n


@dataclass
class Cut:
    """A run of whole pages: one segment of the stream."""

    data: bytes
    offset: int
    granule_start: int
    granule_end: int


@dataclass
class Segmenter:
    """Accumulates pages and cuts every ``seconds`` of audio (Opus granule time)."""

    seconds: float = 5.0
    _buf: bytearray = field(default_factory=bytearray)
    _pages: list[Page] = field(default_factory=list)
    _offset: int = 0
    _granule_start: int = 0

    def feed(self, data: bytes) -> list[Cut]:
        self._buf.extend(data)
        cuts: list[Cut] = []
        while (n := page_length(self._buf)) is not None:
            page = parse_page(bytes(self._buf[:n]))
            del self._buf[:n]
            self._pages.append(page)
            if page.granule - self._granule_start >= self.seconds * OPUS_GRANULE_RATE:
                cuts.append(self._cut())
        return cuts

    def finish(self) -> list[Cut]:
        """What is left once the muxer has closed the stream (whole pages only)."""
        if self._buf:
            raise OggError(f"{len(self._buf)} trailing bytes are not a whole Ogg page")
        return [self._cut()] if self._pages else []

    def _cut(self) -> Cut:
        data = b"".join(p.data for p in self._pages)
        granule_end = max([self._granule_start] + [p.granule for p in self._pages if p.granule >= 0])
        cut = Cut(data, self._offset, self._granule_start, granule_end)
        self._offset += len(data)
        self._granule_start = granule_end
        self._pages = []
        return cut
