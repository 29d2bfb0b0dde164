"""Seeds for the serve_codec harness (tests/fuzz/fuzz_serve_codec.cpp): one byte naming the body's
type, then a small valid body written by numpy (np.save), json, PIL (PNG, JPEG, progressive JPEG,
16-bit and grayscale PNG) or a raw HTTP request. Called by make_seeds.py; tests/serve's hostile
suite adds its malformed JPEG/PNG corpus when KILN_SERVE_SEED_DIR is set."""
import io
import json

import numpy as np
from PIL import Image


def serve_codec_seeds(put):
    rng = np.random.default_rng(1)
    def npy(a):
        b = io.BytesIO()
        np.save(b, a)
        return b.getvalue()
    put("npy_f32", b"\0" + npy(rng.standard_normal((1, 3, 32, 32)).astype(np.float32)))
    put("npy_u8", b"\0" + npy(rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)))
    put("npy_f64", b"\0" + npy(rng.standard_normal((3, 32, 32))))
    px = rng.integers(0, 256, (1, 32, 32, 3)).tolist()
    put("json_hwc", b"\1" + json.dumps({"instances": px}).encode())
    put("json_bare", b"\1" + json.dumps(px).encode())
    def img(im, fmt, **kw):
        b = io.BytesIO()
        im.save(b, fmt, **kw)
        return b.getvalue()
    rgb = Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8))
    put("png_rgb", b"\2" + img(rgb, "PNG"))
    put("png_gray", b"\2" + img(rgb.convert("L"), "PNG"))
    put("png_rgba_interlaced", b"\4" + img(rgb.convert("RGBA"), "PNG", interlace=1))
    put("png_16bit", b"\2" + img(Image.fromarray(rng.integers(0, 65535, (8, 8), dtype=np.uint16)), "PNG"))
    put("jpeg", b"\3" + img(rgb, "JPEG", quality=90))
    put("jpeg_progressive", b"\3" + img(rgb, "JPEG", quality=80, progressive=True))
    put("jpeg_gray", b"\4" + img(rgb.convert("L"), "JPEG"))
    put("http_length", b"\5POST /invocations?k=3 HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-npy\r\n"
        b"Content-Length: 5\r\n\r\nhelloGET /ping HTTP/1.1\r\n\r\n")
    put("http_chunked", b"\5POST /ping HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;x=y\r\nhello\r\n0\r\nT: v\r\n\r\n")
