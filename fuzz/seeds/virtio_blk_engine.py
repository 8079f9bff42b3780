#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes seed inputs for the virtio_blk_engine fuzz target into the directory given:
a flags byte, then guest memory with the descriptor table at 0x0, the available ring at
0x1000 (the used ring goes at 0x2000), request headers from 0x3000 and buffers from 0x4000.
Without seeds the fuzzer rarely gets past the rings (they start beyond its default 4 KiB
input length); run it with -max_len=24576."""
import os
import struct
import sys

NEXT, WRITE = 1, 2
IN, OUT, FLUSH = 0, 1, 4
# Flags byte: 1 EVENT_IDX, 2 read-only medium, 4 write-through, 8 through an image's lock.


def build(flags, chains, headers, size=0x5200):
    m = bytearray(size)
    di, heads = 0, []
    for chain in chains:
        heads.append(di)
        for k, (addr, length, writable) in enumerate(chain):
            last = k == len(chain) - 1
            f = (WRITE if writable else 0) | (0 if last else NEXT)
            struct.pack_into('<QIHH', m, di * 16, addr, length, f, 0 if last else di + 1)
            di += 1
    struct.pack_into('<HH', m, 0x1000, 0, len(heads))
    for i, h in enumerate(heads):
        struct.pack_into('<H', m, 0x1004 + 2 * i, h)
    for at, (kind, sector) in headers.items():
        struct.pack_into('<IIQ', m, at, kind, 0, sector)
    return bytes([flags]) + bytes(m)


READ = [(0x3000, 16, 0), (0x4000, 1024, 1), (0x5000, 1, 1)]
WRITE_THEN_READ = [
    [(0x3000, 16, 0), (0x4000, 2048, 0), (0x5000, 1, 1)],
    [(0x3100, 16, 0), (0x4800, 512, 1), (0x5001, 1, 1)],
]
SEEDS = {
    'read': build(0, [READ], {0x3000: (IN, 2)}),
    'write_flush': build(
        0,
        [[(0x3000, 16, 0), (0x4000, 512, 0), (0x5000, 1, 1)], [(0x3100, 16, 0), (0x5001, 1, 1)]],
        {0x3000: (OUT, 4), 0x3100: (FLUSH, 0)},
    ),
    'split_read_writethrough': build(
        4,
        [[(0x3000, 16, 0), (0x4000, 512, 1), (0x4400, 1024, 1), (0x4c00, 512, 1), (0x5000, 1, 1)]],
        {0x3000: (IN, 8)},
    ),
    'image_read_only': build(8 | 2, WRITE_THEN_READ, {0x3000: (OUT, 1), 0x3100: (IN, 30)}),
    'image_event_idx': build(
        8 | 1,
        WRITE_THEN_READ + [[(0x3200, 16, 0), (0x5002, 1, 1)]],
        {0x3000: (OUT, 1), 0x3100: (IN, 30), 0x3200: (FLUSH, 0)},
    ),
}

if __name__ == '__main__':
    out = sys.argv[1] if len(sys.argv) > 1 else 'corpus/virtio_blk_engine'
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), 'wb') as f:
            f.write(data)
