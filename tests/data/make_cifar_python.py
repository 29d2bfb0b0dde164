# Writes a small CIFAR-100 python-version dataset the way the published one is laid out:
# DIR/cifar-100-python/{train,test,meta}, DIR/cifar-100-python.tar.gz and, for cross-checks,
# the same records in the binary version under DIR/cifar-100-binary/ (and its .tar.gz).
# `train` and `meta` are hand-written Python 2 cPickle protocol 2 streams (what the real files
# are: SHORT_BINSTRING keys, numpy _reconstruct); `test` is Python 3's pickle protocol 2
# (bytes through _codecs.encode). Usage: make_cifar_python.py DIR NTRAIN NTEST [extra tar member]
import io, os, pickle, struct, sys, tarfile
import numpy as np

d, ntrain, ntest = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
extra = sys.argv[4] if len(sys.argv) > 4 else None
names = ["apple", "aquarium_fish", "baby"] + ["class_%d" % i for i in range(3, 100)]

def images(n, salt):
    i = np.arange(n, dtype=np.int64)[:, None]
    k = np.arange(3072, dtype=np.int64)[None, :]
    return ((i * 31 + k * 7 + salt) % 251).astype(np.uint8)

def labels(n, salt):
    return [int((i * 37 + salt) % 100) for i in range(n)]

def py2_str(b):
    return (b"U" + bytes([len(b)]) + b) if len(b) < 256 else (b"T" + struct.pack("<i", len(b)) + b)

def py2_int(v):
    if 0 <= v < 256: return b"K" + bytes([v])
    if 0 <= v < 65536: return b"M" + struct.pack("<H", v)
    return b"J" + struct.pack("<i", v)

def py2(obj):
    if isinstance(obj, dict):
        out = b"}("
        for k, v in obj.items(): out += py2_str(k.encode()) + py2(v)
        return out + b"u"
    if isinstance(obj, list):
        return b"](" + b"".join(py2(x) for x in obj) + b"e"
    if isinstance(obj, int): return py2_int(obj)
    if isinstance(obj, (str, bytes)): return py2_str(obj.encode() if isinstance(obj, str) else obj)
    if isinstance(obj, np.ndarray):
        shape = b"(" + b"".join(py2_int(s) for s in obj.shape) + b"t"
        dtype = (b"cnumpy\ndtype\n" + py2_str(b"u1") + b"K\x00K\x01\x87R(K\x03" + py2_str(b"|") +
                 b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
        return (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + py2_str(b"b") +
                b"\x87R(K\x01" + shape + dtype + b"\x89" + py2_str(obj.tobytes()) + b"tb")
    raise TypeError(type(obj))

def py2_dump(obj):
    return b"\x80\x02" + py2(obj) + b"."

tr_x, tr_y = images(ntrain, 0), labels(ntrain, 0)
te_x, te_y = images(ntest, 5), labels(ntest, 11)
p = os.path.join(d, "cifar-100-python")
os.makedirs(p, exist_ok=True)
files = {
    "train": py2_dump({"filenames": ["a.png"] * ntrain, "batch_label": "training batch 1 of 1",
                       "fine_labels": tr_y, "coarse_labels": [y // 5 for y in tr_y], "data": tr_x}),
    "test": pickle.dumps({b"filenames": [b"b.png"] * ntest, b"batch_label": b"testing batch 1 of 1",
                          b"fine_labels": te_y, b"coarse_labels": [y // 5 for y in te_y], b"data": te_x},
                         protocol=2),
    "meta": py2_dump({"fine_label_names": names, "coarse_label_names": ["g%d" % i for i in range(20)]}),
}
for k, v in files.items():
    open(os.path.join(p, k), "wb").write(v)
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.GNU_FORMAT) as t:
    members = list(files.items()) + ([(extra, b"x\n")] if extra else [])
    info = tarfile.TarInfo("cifar-100-python"); info.type = tarfile.DIRTYPE; t.addfile(info)
    for k, v in members:
        info = tarfile.TarInfo("cifar-100-python/" + k); info.size = len(v)
        t.addfile(info, io.BytesIO(v))
open(os.path.join(d, "cifar-100-python.tar.gz"), "wb").write(buf.getvalue())
b = os.path.join(d, "cifar-100-binary")
os.makedirs(b, exist_ok=True)
for name, x, y in (("train.bin", tr_x, tr_y), ("test.bin", te_x, te_y)):
    recs = np.concatenate([np.array([[yy // 5, yy] for yy in y], dtype=np.uint8), x], axis=1)
    recs.tofile(os.path.join(b, name))
open(os.path.join(b, "fine_label_names.txt"), "w").write("\n".join(names) + "\n\n")
with tarfile.open(os.path.join(d, "cifar-100-binary.tar.gz"), "w:gz", format=tarfile.USTAR_FORMAT) as t:
    t.add(b, arcname="cifar-100-binary")
print("ok")
