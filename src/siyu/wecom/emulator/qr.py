"""QR-code-like PNG images for the ``qr_code`` URLs the emulator hands out.

WeCom's ``qr_code`` is the URL of a PNG. The emulator serves a deterministic picture that
looks like a QR code (three finder patterns, timing lines, modules derived from the config
id) so that posters and pages can embed it; it is not a decodable QR code — scanning is
done through the control API (``/control/scan`` with the URL or config id).
"""

from __future__ import annotations

import hashlib
import struct
import zlib

MODULES = 25
QUIET = 4


def _matrix(seed: str) -> list[list[bool]]:
    bits = []
    digest = b""
    counter = 0
    while len(bits) < MODULES * MODULES:
        digest = hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
        bits.extend(bool(byte >> i & 1) for byte in digest for i in range(8))
    grid = [[bits[r * MODULES + c] for c in range(MODULES)] for r in range(MODULES)]
    for top, left in ((0, 0), (0, MODULES - 7), (MODULES - 7, 0)):
        for r in range(-1, 8):
            for c in range(-1, 8):
                row, col = top + r, left + c
                if not (0 <= row < MODULES and 0 <= col < MODULES):
                    continue
                ring = max(abs(r - 3), abs(c - 3))
                grid[row][col] = ring in (0, 1, 3) and 0 <= r <= 6 and 0 <= c <= 6
    for i in range(8, MODULES - 8):
        grid[6][i] = grid[i][6] = i % 2 == 0
    return grid


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def qr_png(seed: str, scale: int = 8) -> bytes:
    """A greyscale PNG of ``(25 + 8) * scale`` pixels square."""
    grid = _matrix(seed)
    side = (MODULES + 2 * QUIET) * scale
    rows = []
    for y in range(side):
        r = y // scale - QUIET
        line = bytearray(b"\x00")  # filter type: none
        for x in range(side):
            c = x // scale - QUIET
            dark = 0 <= r < MODULES and 0 <= c < MODULES and grid[r][c]
            line.append(0 if dark else 255)
        rows.append(bytes(line))
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
        + _chunk(b"IEND", b"")
    )
