"""Ogg pages for one Opus listener (RFC 3533 framing, RFC 7845 Ogg Opus mapping).

The Opus packets are encoded once per source (api/audio.py); each listener wraps them in
pages of its own, so its stream starts at page 0 with its own headers and granule positions
however late it joined. One page per speech chunk: nothing waits for a next chunk, and the
page overhead (27 bytes + one lacing byte per packet) stays small.

Ogg's CRC is the non-reflected CRC-32 (polynomial 0x04C11DB7, initial value 0). zlib only
has the reflected one, so it is computed from zlib on bit-reversed bytes: both run in C.
"""

from __future__ import annotations

import struct
import zlib

_REVERSE = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))
_HEADER = struct.Struct("<4sBBqIIIB")
VENDOR = b"lookout"


def ogg_crc(data: bytes) -> int:
    """The CRC of an Ogg page (with its CRC field zeroed)."""
    # zlib.crc32 starts from and xors with 0xFFFFFFFF; the zeros term cancels both.
    raw = zlib.crc32(data.translate(_REVERSE)) ^ zlib.crc32(bytes(len(data)))
    return int(f"{raw:032b}"[::-1], 2)


def opus_tags() -> bytes:
    return b"OpusTags" + struct.pack("<I", len(VENDOR)) + VENDOR + struct.pack("<I", 0)


class OggOpusWriter:
    """Pages of one logical Ogg Opus stream."""

    def __init__(self, serial: int, opus_head: bytes) -> None:
        self.serial = serial
        self.sequence = 0
        self.granule = 0
        self.head = opus_head

    def headers(self) -> bytes:
        """The two header pages: OpusHead (beginning of stream), then OpusTags."""
        return self._page([self.head], granule=0, flags=0x02) + self._page(
            [opus_tags()], granule=0, flags=0
        )

    def audio(self, packets: list[bytes], frame_samples: int) -> bytes:
        """Pages holding `packets`, each of which decodes to `frame_samples` at 48 kHz."""
        out = []
        # A page holds at most 255 lacing values; packets of speech are a few hundred bytes.
        start = 0
        while start < len(packets):
            count, lacing = 0, 0
            while start + count < len(packets):
                need = len(packets[start + count]) // 255 + 1
                if lacing + need > 255:
                    break
                lacing += need
                count += 1
            if count == 0:
                raise ValueError("an Opus packet too large for one Ogg page")
            self.granule += count * frame_samples  # the end of the page's last packet
            out.append(self._page(packets[start : start + count], self.granule, flags=0))
            start += count
        return b"".join(out)

    def _page(self, packets: list[bytes], granule: int, flags: int) -> bytes:
        lacing = bytearray()
        for packet in packets:
            lacing += b"\xff" * (len(packet) // 255) + bytes([len(packet) % 255])
        header = _HEADER.pack(
            b"OggS", 0, flags, granule, self.serial, self.sequence, 0, len(lacing)
        )
        page = b"".join((header, bytes(lacing), *packets))
        crc = ogg_crc(page)
        self.sequence += 1
        return page[:22] + struct.pack("<I", crc) + page[26:]
