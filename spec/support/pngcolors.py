"""How many distinct pixel values a PNG holds, and its size: "COLORS WIDTH HEIGHT",
then for each RRGGBB given after the file, how many pixels have that color.

    python3 pngcolors.py shot.png 2e9d4f d93025

For the specs that check a screenshot is not blank, decoded by hand (zlib and
the five PNG row filters) so that no imaging library is needed. 8-bit, not
interlaced: what Chromium writes.
"""
import struct
import sys
import zlib

BYTES_PER_PIXEL = {0: 1, 2: 3, 4: 2, 6: 4}  # grey, RGB, grey+alpha, RGBA


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def main(path, wanted):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        sys.exit("not a PNG: " + path)
    pos, idat = 8, b""
    width = height = bpp = 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or interlace or ctype not in BYTES_PER_PIXEL:
                sys.exit("unsupported PNG: depth %d, color type %d, interlace %d" % (depth, ctype, interlace))
            bpp = BYTES_PER_PIXEL[ctype]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, stride = zlib.decompress(idat), width * bpp
    prev, colors, i = bytearray(stride), {}, 0
    for _ in range(height):
        kind, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if kind == 1:
                line[x] = (line[x] + a) & 255
            elif kind == 2:
                line[x] = (line[x] + b) & 255
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif kind == 4:
                line[x] = (line[x] + paeth(a, b, c)) & 255
        for k in range(0, stride, bpp):
            px = bytes(line[k:k + 3])  # RGB (grey images never match a color asked for)
            colors[px] = colors.get(px, 0) + 1
        prev = line
    print(len(colors), width, height, *[colors.get(bytes.fromhex(h), 0) for h in wanted])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
