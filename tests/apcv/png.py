"""A minimal PNG reader (no PIL/numpy in the venv) so zxing-cpp can decode the QR codes the simulator draws.

Handles what segno writes: non-interlaced, 8-bit-or-less greyscale or palette images, all five filters.
"""

from __future__ import annotations

import struct
import zlib

import zxingcpp

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def grey_pixels(png: bytes) -> tuple[int, int, bytes]:
    """(width, height, one byte of grey per pixel)."""
    assert png.startswith(SIGNATURE), "not a PNG"
    pos, idat, palette = 8, b"", None
    width = height = depth = ctype = 0
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos:pos + 4])
        kind, data = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", data)
            assert ctype in (0, 3) and depth in (1, 2, 4, 8) and interlace == 0, (ctype, depth, interlace)
        elif kind == b"PLTE":
            palette = [data[i:i + 3] for i in range(0, len(data), 3)]
        elif kind == b"IDAT":
            idat += data
    raw = zlib.decompress(idat)
    stride = (width * depth + 7) // 8
    bpp = max(1, depth // 8)
    prev = bytearray(stride)
    out = bytearray()
    maxval = (1 << depth) - 1
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + (0, a, b, (a + b) // 2, _paeth(a, b, c))[ftype]) & 0xFF
        prev = line
        for x in range(width):
            bit = x * depth
            value = (line[bit // 8] >> (8 - depth - bit % 8)) & maxval
            if palette is not None:
                r, g, b2 = palette[value]
                out.append((r * 299 + g * 587 + b2 * 114) // 1000)
            else:
                out.append(value * 255 // maxval)
    return width, height, bytes(out)


def decode_qr(png: bytes) -> list[str]:
    """Texts of the QR codes found in a PNG image."""
    width, height, pixels = grey_pixels(png)
    image = memoryview(pixels).cast("B", (height, width))
    return [r.text for r in zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)]
