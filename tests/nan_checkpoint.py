#!/usr/bin/env python3
"""Writes a copy of a checkpoint whose first parameter is NaN, with both CRCs
fixed (docs/formats.md, "Checkpoint"), so that only a finiteness check can
refuse it. Used by tests/bad_inputs.sh.

    python3 tests/nan_checkpoint.py IN.bin OUT.bin
"""
import struct
import sys
import zlib

HEADER = 256
PAYLOAD_CRC = 180
HEADER_CRC = 200


def main():
    source, target = sys.argv[1], sys.argv[2]
    data = bytearray(open(source, "rb").read())
    assert data[:8] == b"IGPTCKPT", f"{source} is not a checkpoint"
    data[HEADER:HEADER + 4] = struct.pack("<f", float("nan"))
    struct.pack_into("<I", data, PAYLOAD_CRC, zlib.crc32(data[HEADER:]))
    struct.pack_into("<I", data, HEADER_CRC, 0)
    struct.pack_into("<I", data, HEADER_CRC, zlib.crc32(data[:HEADER]))
    open(target, "wb").write(data)


if __name__ == "__main__":
    main()
