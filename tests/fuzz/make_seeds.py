"""Writes the fuzz harnesses' seed corpora: small valid files written by the tools that own each
format (PyTorch, numpy, tarfile, gzip, zipfile, pickle), one folder per harness.

usage: make_seeds.py OUT_DIR     (writes OUT_DIR/<harness>/<seed>; run by scripts/fuzz)
Seeds are kept small (a few KiB) so that libFuzzer's mutations stay fast.
"""
import collections
import gzip
import io
import json
import os
import pickle
import struct
import sys
import tarfile
import zipfile

import numpy as np
import torch


def put(out, harness, name, data):
    d = os.path.join(out, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def torch_bytes(obj, **kw):
    b = io.BytesIO()
    torch.save(obj, b, **kw)
    return b.getvalue()


def safetensors_bytes(tensors, metadata=None):
    # The format is an 8-byte header length, a JSON header, then the data (no library needed).
    header, blobs, off = {}, [], 0
    names = {np.float32: "F32", np.float64: "F64", np.float16: "F16", np.int64: "I64",
             np.int32: "I32", np.int16: "I16", np.int8: "I8", np.uint8: "U8", np.bool_: "BOOL"}
    for k, a in tensors.items():
        raw = np.ascontiguousarray(a).tobytes()
        header[k] = {"dtype": names[a.dtype.type], "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def main(out):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    small = collections.OrderedDict()
    small["conv.weight"] = torch.randn(2, 1, 3, 3)
    small["bn.running_var"] = torch.rand(2)
    small["bn.num_batches_tracked"] = torch.tensor(3)
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    views = collections.OrderedDict(t=base.t(), a=base[1], b=base[2, 1:], i=torch.tensor([1, -2], dtype=torch.int32),
                                    h=torch.tensor([0.5], dtype=torch.float16), f=torch.tensor([True]))

    # .pth: torch.save (zip) with plain, viewed and nested state dicts
    pth = {"small.pth": torch_bytes(small), "views.pth": torch_bytes(views),
           "nested.pth": torch_bytes({"epoch": 1, "state_dict": small})}
    for k, v in pth.items():
        put(out, "pth", k, v)
        put(out, "zip", k, v)
    # a deflated copy of a torch archive (kiln accepts deflate entries)
    src = zipfile.ZipFile(io.BytesIO(pth["views.pth"]))
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            z.writestr(info.filename, src.read(info.filename))
    put(out, "pth", "deflated.pth", b.getvalue())
    put(out, "zip", "deflated.zip", b.getvalue())

    # pickles: torch's data.pkl, CIFAR-like dicts with numpy arrays at several protocols
    for k, v in pth.items():
        put(out, "pickle", k.replace(".pth", ".pkl"), zipfile.ZipFile(io.BytesIO(v)).read(
            [n for n in zipfile.ZipFile(io.BytesIO(v)).namelist() if n.endswith("data.pkl")][0]))
    cifar = {"filenames": ["a.png", "b.png"], "fine_labels": [3, 99], "coarse_labels": [1, 19],
             "data": rng.integers(0, 256, (2, 3072 // 64), dtype=np.uint8), b"batch_label": b"training batch"}
    for proto in (0, 2, 4, 5):
        put(out, "pickle", f"cifar{proto}.pkl", pickle.dumps(cifar, protocol=proto))
    put(out, "pickle", "misc.pkl", pickle.dumps([1.5, -7, 2**40, None, True, (1, 2), {3}, frozenset([4]),
                                                bytearray(b"xy"), np.float32(2.5), np.int64(-1)], protocol=2))

    # NPY: several dtypes and versions
    for i, a in enumerate([np.arange(6, dtype=np.float32).reshape(2, 3), np.array(3.5), np.zeros((0, 2), np.int64),
                           np.array([True, False]), rng.integers(-9, 9, (2, 2, 2), dtype=np.int8),
                           np.array([1, 2], np.float16), np.ones((2, 2), np.float64)]):
        b = io.BytesIO()
        np.save(b, a)
        put(out, "npy", f"{i}.npy", b.getvalue())
    b = io.BytesIO()
    np.lib.format.write_array(b, np.arange(4, dtype=np.int32), version=(2, 0))
    put(out, "npy", "v2.npy", b.getvalue())

    # safetensors
    put(out, "safetensors", "small.safetensors", safetensors_bytes(
        {k: v.numpy() for k, v in small.items()}, {"format": "pt"}))
    put(out, "safetensors", "dtypes.safetensors", safetensors_bytes(
        {"u8": np.array([1, 2], np.uint8), "b": np.array([True]), "d": np.array([[1.0]]), "e": np.zeros((0,), np.int16)}))

    # tar (ustar, GNU long names, pax) and gzip
    def tar_bytes(fmt, long_names):
        b = io.BytesIO()
        with tarfile.open(fileobj=b, mode="w", format=fmt) as t:
            d = tarfile.TarInfo("cifar-100-python")
            d.type = tarfile.DIRTYPE
            t.addfile(d)
            for name, data in [("cifar-100-python/meta", b"fine"), ("x/" + "n" * (150 if long_names else 10), b"data" * 50)]:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mtime = 1700000000
                t.addfile(info, io.BytesIO(data))
            link = tarfile.TarInfo("x/link")
            link.type = tarfile.SYMTYPE
            link.linkname = "../x"
            t.addfile(link)
        return b.getvalue()
    tars = {"ustar.tar": tar_bytes(tarfile.USTAR_FORMAT, False), "gnu.tar": tar_bytes(tarfile.GNU_FORMAT, True),
            "pax.tar": tar_bytes(tarfile.PAX_FORMAT, True)}
    for k, v in tars.items():
        put(out, "tar", k, v)
    put(out, "gzip", "tar.gz", gzip.compress(tars["ustar.tar"], mtime=0))
    put(out, "gzip", "text.gz", gzip.compress(b"hello " * 100, mtime=0))
    put(out, "gzip", "two-members.gz", gzip.compress(b"a" * 10, mtime=0) + gzip.compress(b"b" * 10, mtime=0))
    put(out, "gzip", "empty.gz", gzip.compress(b"", mtime=0))
    from seeds_serve_codec import serve_codec_seeds
    serve_codec_seeds(lambda name, data: put(out, "serve_codec", name, data))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
