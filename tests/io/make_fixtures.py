"""Generates the io test fixtures with the PyTorch/numpy oracle (Debian's python3-torch 1.13).

usage: make_fixtures.py OUT_DIR          writes the fixtures below into OUT_DIR
       make_fixtures.py --check KILN_PTH ORIG_PTH
           torch.load(KILN_PTH, weights_only=True) must equal ORIG_PTH tensor for tensor (names,
           order, dtypes, values) and load into torchvision's resnet18 with strict=True.
"""
import collections
import os
import pickle
import sys
import tarfile
import io

try:
    import numpy as np
    import torch
    import torchvision
except ImportError as e:  # parity tests are never skipped: say what is missing and fail
    sys.exit(f"make_fixtures.py: cannot import {e.name} with {sys.executable}: the io parity tests "
             "need Debian's python3-torch, python3-torchvision and python3-numpy "
             "(or set KILN_PYTHON to a Python that has them)")


def write_fixtures(out):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=100)
    model.train()
    model(torch.randn(2, 3, 32, 32))  # running stats and num_batches_tracked become non-trivial
    sd = model.state_dict()
    torch.save(sd, os.path.join(out, "resnet18.pth"))
    os.makedirs(os.path.join(out, "ref"), exist_ok=True)
    with open(os.path.join(out, "ref", "index.txt"), "w") as f:
        for i, (k, v) in enumerate(sd.items()):
            np.save(os.path.join(out, "ref", f"{i}.npy"), v.numpy())
            f.write(f"{k}\n")

    # Views: a transposed (non-contiguous) tensor, two tensors sharing one storage at offsets,
    # and the dtypes kiln maps (f64, f16, bf16, i32, i64 scalar, bool, u8, i8).
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    big = torch.arange(10, dtype=torch.int64)
    views = collections.OrderedDict()
    views["transposed"] = base.t()
    views["slice_a"] = big[2:5]
    views["slice_b"] = big[6:10].view(2, 2)
    views["f64"] = torch.linspace(-1, 1, 5, dtype=torch.float64)
    views["f16"] = torch.tensor([0.5, -2.0], dtype=torch.float16)
    views["bf16"] = torch.tensor([1.5, 3.0], dtype=torch.bfloat16)
    views["i32"] = torch.tensor([[1, -2], [3, 4]], dtype=torch.int32)
    views["scalar"] = torch.tensor(7, dtype=torch.int64)
    views["flags"] = torch.tensor([True, False, True])
    views["u8"] = torch.tensor([0, 255], dtype=torch.uint8)
    views["i8"] = torch.tensor([-128, 127], dtype=torch.int8)
    views["empty"] = torch.zeros(0, 3)
    torch.save(views, os.path.join(out, "views.pth"))
    # Lightning-style checkpoint: the weights nested under "state_dict".
    torch.save({"epoch": 3, "state_dict": collections.OrderedDict(w=base)}, os.path.join(out, "nested.pth"))
    torch.save(views, os.path.join(out, "legacy.pth"), _use_new_zipfile_serialization=False)

    # numpy
    np.save(os.path.join(out, "f32.npy"), np.arange(12, dtype=np.float32).reshape(3, 4))
    np.save(os.path.join(out, "u8.npy"), np.arange(6, dtype=np.uint8).reshape(1, 2, 3))
    np.save(os.path.join(out, "i64.npy"), np.array([-5, 2**40], dtype=np.int64))
    np.save(os.path.join(out, "b1.npy"), np.array([True, False]))
    np.save(os.path.join(out, "f64_scalar.npy"), np.float64(2.5))
    np.save(os.path.join(out, "fortran.npy"), np.asfortranarray(np.ones((2, 3), dtype=np.float32)))
    np.save(os.path.join(out, "bigendian.npy"), np.arange(3, dtype=">f4"))

    # A CIFAR-100-like python pickle: protocol 2, bytes keys, a uint8 array (written by numpy
    # through _codecs.encode(latin1) at protocol 2), lists of ints and of bytes file names.
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, size=(5, 3072), dtype=np.uint8)
    cifar = {b"filenames": [b"apple_s_000022.png", b"\xe9t\xe9.png", b"c.png", b"d.png", b"e.png"],
             b"batch_label": b"training batch 1 of 1",
             b"fine_labels": [19, 29, 0, 11, 1], b"coarse_labels": [11, 15, 4, 14, 1], b"data": data}
    with open(os.path.join(out, "cifar_train"), "wb") as f:
        pickle.dump(cifar, f, protocol=2)
    data.tofile(os.path.join(out, "cifar_train.data"))
    meta = {"fine_label_names": ["apple", "aquarium_fish"], "coarse_label_names": ["aquatic_mammals"]}
    with open(os.path.join(out, "cifar_meta"), "wb") as f:
        pickle.dump(meta, f, protocol=2)
    for proto in (3, 4, 5):
        with open(os.path.join(out, f"cifar_train_p{proto}"), "wb") as f:
            pickle.dump(cifar, f, protocol=proto)

    # Hostile pickles: each would run a command if unpickled by Python.
    marker = os.path.join(out, "PWNED")

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    with open(os.path.join(out, "evil.pkl"), "wb") as f:
        pickle.dump(Evil(), f, protocol=2)
    with open(os.path.join(out, "evil_os.pkl"), "wb") as f:
        f.write(f"cos\nsystem\n(S'touch {marker}'\ntR.".encode())
    # The same inside a torch.save zip (as a malicious .pth would be).
    with open(os.path.join(out, "views.pth"), "rb") as f:
        import zipfile
        src = zipfile.ZipFile(f)
        with zipfile.ZipFile(os.path.join(out, "evil.pth"), "w") as dst:
            for info in src.infolist():
                data_ = src.read(info)
                if info.filename.endswith("data.pkl"):
                    data_ = pickle.dumps(Evil(), protocol=2)
                dst.writestr(info.filename, data_)
    # A deflated zip that kiln must also read (stored is torch's default).
    with zipfile.ZipFile(os.path.join(out, "deflated.pth"), "w", compression=zipfile.ZIP_DEFLATED) as dst:
        src = zipfile.ZipFile(os.path.join(out, "views.pth"))
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))

    # tar.gz like cifar-100-python.tar.gz, with a GNU long name and a pax long name.
    buf = io.BytesIO()
    long_name = "cifar-100-python/" + "x" * 150 + "/train"
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.GNU_FORMAT) as t:
        for name in ("cifar-100-python/train", "cifar-100-python/meta", long_name):
            payload = open(os.path.join(out, "cifar_train" if "train" in name else "cifar_meta"), "rb").read()
            ti = tarfile.TarInfo(name)
            ti.size = len(payload)
            t.addfile(ti, io.BytesIO(payload))
    open(os.path.join(out, "cifar.tar.gz"), "wb").write(buf.getvalue())
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        ti = tarfile.TarInfo("p/" + "y" * 200)
        ti.size = 3
        t.addfile(ti, io.BytesIO(b"abc"))
        ti = tarfile.TarInfo("dir")
        ti.type = tarfile.DIRTYPE
        t.addfile(ti)
    open(os.path.join(out, "pax.tar"), "wb").write(buf.getvalue())


def check(kiln_pth, orig_pth):
    got = torch.load(kiln_pth, weights_only=True)
    want = torch.load(orig_pth)
    if list(got.keys()) != list(want.keys()):
        sys.exit(f"keys differ: {list(got.keys())[:5]}... vs {list(want.keys())[:5]}...")
    for k in want:
        g, w = got[k], want[k]
        if g.dtype != w.dtype or g.shape != w.shape or not torch.equal(g, w):
            sys.exit(f"tensor {k}: got {g.dtype} {tuple(g.shape)}, expected {w.dtype} {tuple(w.shape)} (or values differ)")
    model = torchvision.models.resnet18(num_classes=100)
    model.load_state_dict(got, strict=True)
    print(f"ok: {len(got)} tensors identical; torchvision resnet18 load_state_dict(strict=True) accepted")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--check":
        check(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 2:
        write_fixtures(sys.argv[1])
    else:
        sys.exit(__doc__)
