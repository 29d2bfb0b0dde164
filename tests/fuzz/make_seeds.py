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

    # CIFAR-100: binary records (coarse, fine, 3072 pixels) and the python pickles; the python
    # harness's first byte picks meta (odd) or a split (even)
    put(out, "cifar_binary", "two.bin", bytes([1, 99]) + bytes(3072) + bytes([19, 0]) + bytes(range(256)) * 12)
    fine = [f"class{i}" for i in range(100)]
    meta = {"fine_label_names": fine, "coarse_label_names": [f"super{i}" for i in range(20)]}
    split = {"filenames": ["a.png", "b.png"], "fine_labels": [3, 99], "coarse_labels": [1, 19],
             "data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), "batch_label": "training batch 1 of 1"}
    for proto in (2, 3):
        put(out, "cifar_python", f"meta{proto}", b"\x01" + pickle.dumps(meta, protocol=proto))
        put(out, "cifar_python", f"train{proto}", b"\x00" + pickle.dumps(split, protocol=proto))
    put(out, "cifar_python", "train-bytes-keys", b"\x00" + pickle.dumps({k.encode(): v for k, v in split.items()}, protocol=2))

    # SageMaker hyperparameters.json (values JSON-encoded once more by the SDK) and config.json
    for i, hp in enumerate([{"epochs": "2", "batch-size": "\"64\"", "learning_rate": "0.1", "momentum": "0.9"},
                            {"lr": 0.05, "weight_decay": "5e-4", "sagemaker_program": "\"train.py\"", "amp": "true"},
                            {"max-steps": "10", "seed": "1", "one-cycle": "yes", "threads": "0"}]):
        put(out, "hyperparameters", f"{i}.json", json.dumps(hp).encode())
    put(out, "model_config", "config.json", json.dumps({
        "format": "kiln-model", "version": 1, "arch": "resnet34", "num_classes": 3, "class_names": ["a", "b", "c"],
        "mean": [0.5071, 0.4865, 0.4409], "std": [0.2673, 0.2564, 0.2762], "image_size": 32, "dataset": "cifar100"},
        indent=2).encode())

    # AWS: config/credentials files (first byte even) and credentials documents (odd)
    put(out, "aws_config", "credentials", b"\x00[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = s\n"
        b"# c\n[dev]\r\naws_session_token=t\r\n")
    put(out, "aws_config", "config", b"\x00[profile dev]\nregion = eu-west-1\ns3 =\n  max_concurrency = 4\n;x\n")
    put(out, "aws_config", "container.json", b"\x01" + json.dumps({
        "AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": "s", "Token": "t", "Expiration": "2099-01-01T00:00:00Z"}).encode())
    put(out, "aws_config", "imds-error.json", b"\x01" + json.dumps({"Code": "AssumeRoleUnauthorizedAccess", "Message": "m"}).encode())
    ns = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
    put(out, "aws_xml", "list.xml", f"""<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult {ns}><Name>b</Name><Prefix>data/</Prefix><KeyCount>2</KeyCount><IsTruncated>true</IsTruncated>
<NextContinuationToken>tok==</NextContinuationToken><Contents><Key>data/a&amp;b.csv</Key><Size>123</Size>
<ETag>&quot;abc&quot;</ETag><LastModified>2024-01-01T00:00:00.000Z</LastModified></Contents>
<CommonPrefixes><Prefix>data/sub/</Prefix></CommonPrefixes></ListBucketResult>""".encode())
    put(out, "aws_xml", "error.xml", b"<?xml version='1.0'?><Error><Code>NoSuchUpload</Code><Message>gone</Message>"
        b"<![CDATA[x<y]]></Error>")
    put(out, "aws_xml", "iam.xml", b"<GetRoleResponse><GetRoleResult><Role><Arn>arn:aws:iam::1:role/R</Arn></Role>"
        b"<AttachedPolicies><member><PolicyArn>arn:p</PolicyArn></member></AttachedPolicies></GetRoleResult></GetRoleResponse>")
    put(out, "sagemaker_json", "describe.json", json.dumps({
        "TrainingJobName": "j", "TrainingJobStatus": "InProgress", "CreationTime": 1700000000.5,
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}}).encode())
    put(out, "sagemaker_json", "describe-text-time.json", json.dumps({
        "CreationTime": "2026-12-03T07:01:58.123+01:00", "StoppingCondition": {"MaxRuntimeInSeconds": 60}}).encode())
    put(out, "sagemaker_json", "error.json", b'{"__type":"com.amazon.coral#ValidationException","message":"bad"}')
    put(out, "sigv4", "get", b"GET\nexamplebucket/test%20file.txt\nlist-type=2&prefix=a%2Fb&x\nRange: bytes=0-9\n"
        b"x-amz-meta-a:  two  spaces \n")
    put(out, "sigv4", "dots", b"PUT\na/./b/../c//d\nk=v&k=u&%E2%82%AC=1\nContent-Type:text/plain\n")
    from seeds_serve_codec import serve_codec_seeds
    serve_codec_seeds(lambda name, data: put(out, "serve_codec", name, data))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
