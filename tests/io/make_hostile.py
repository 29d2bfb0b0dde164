"""Writes the crafted memory-amplification files of issue 11 (and a benign twin of each) into OUT_DIR.

usage: make_hostile.py OUT_DIR
  shared_storage.pth   torch.save of 4,000 state_dict entries that are one 1 MiB tensor (~4 GiB as copies)
  shared_deflate.pth   a zip whose 4,000 storage records name one deflate stream of 1 MiB (~4 GiB inflated)
  memo_amplify.pkl     a pickle calling allowed constructors 20,000 times on one memoized 256 KiB value
  memo_amplify.pth     the same pickle as a .pth's data.pkl
  offset_overflow.pth  a tensor whose storage_offset is INT64_MAX - 1 (signed overflow before the fix)
  tied.pth             a genuine state_dict with two names for one weight (must still load)
"""
import collections
import io
import os
import struct
import sys
import zipfile
import zlib

import torch

N_VIEWS = 4000


def unicode(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def integer(v):
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if -2**31 <= v < 2**31:
        return b"J" + struct.pack("<i", v)
    return b"\x8a\x08" + struct.pack("<q", v)


def tensor_pickle(entries):
    """protocol-2 OrderedDict of name -> _rebuild_tensor_v2(('storage', FloatStorage, key, 'cpu', numel), offset, size, stride)."""
    # the dict, a MARK, then the two globals memoized (1, 2) and popped
    p = b"\x80\x02ccollections\nOrderedDict\n)R("
    p += b"ctorch._utils\n_rebuild_tensor_v2\nq\x010ctorch\nFloatStorage\nq\x020"
    for name, key, numel, offset, size in entries:
        p += unicode(name) + b"h\x01(" + b"(" + unicode("storage") + b"h\x02" + unicode(key) + unicode("cpu")
        p += integer(numel) + b"tQ" + integer(offset) + b"(" + integer(size) + b"t(" + integer(1) + b"t\x89"
        p += b"ccollections\nOrderedDict\n)RtR"
    return p + b"u."


def main(out):
    os.makedirs(out, exist_ok=True)
    mib = 1 << 20
    # 1. one storage, 4,000 names: torch itself writes this (the storage once, 4,000 references)
    t = torch.zeros(mib // 4)
    torch.save(collections.OrderedDict((f"w{i}", t) for i in range(N_VIEWS)), os.path.join(out, "shared_storage.pth"))

    # 2. one deflate stream of 1 MiB named by 4,000 central directory entries
    pkl = tensor_pickle([(f"w{i}", str(i), mib // 4, 0, mib // 4) for i in range(N_VIEWS)])
    raw = bytes(mib)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = comp.compress(raw) + comp.flush()
    crc = zlib.crc32(raw)
    body = b""
    central = b""
    def local(name, data, method, size, c):
        return struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 33, c, len(data), size, len(name), 0) + name + data
    def cdir(name, method, csize, size, c, off):
        return struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 33, c, csize, size, len(name), 0, 0, 0, 0, 0, off) + name
    name = b"archive/data.pkl"
    central += cdir(name, 0, len(pkl), len(pkl), zlib.crc32(pkl), len(body))
    body += local(name, pkl, 0, len(pkl), zlib.crc32(pkl))
    shared = len(body)
    body += local(b"archive/data/0", deflated, 8, mib, crc)
    for i in range(N_VIEWS):
        central += cdir(f"archive/data/{i}".encode(), 8, len(deflated), mib, crc, shared)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, N_VIEWS + 1, N_VIEWS + 1, len(central), len(body), 0)
    with open(os.path.join(out, "shared_deflate.pth"), "wb") as f:
        f.write(body + central + end)

    # 3. memo amplification: bytearray / _codecs.encode / set on one memoized 256 KiB value
    big = b"B" + struct.pack("<I", 256 * 1024) + b"x" * (256 * 1024)
    p = b"\x80\x02]" + big + b"q\x010"                       # a list; the value memoized as 1
    p += b"c__builtin__\nbytearray\nq\x020c_codecs\nencode\nq\x030"  # the constructors as 2, 3
    for i in range(20000):                                            # list.append(ctor(value))
        p += (b"h\x02" if i % 2 == 0 else b"h\x03") + b"h\x01\x85Ra"
    p += b"."
    with open(os.path.join(out, "memo_amplify.pkl"), "wb") as f:
        f.write(p)
    with zipfile.ZipFile(os.path.join(out, "memo_amplify.pth"), "w") as z:
        z.writestr("archive/data.pkl", p)

    # 4. storage_offset near INT64_MAX
    pkl = tensor_pickle([("w", "0", 4, 2**63 - 2, 4)])
    with zipfile.ZipFile(os.path.join(out, "offset_overflow.pth"), "w") as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/data/0", bytes(16))

    # 5. a genuine file with a tied weight (two names, one storage): must load
    w = torch.arange(6, dtype=torch.float32)
    torch.save(collections.OrderedDict(emb=w, head=w, bias=torch.ones(2)), os.path.join(out, "tied.pth"))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
