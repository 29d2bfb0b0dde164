#!/usr/bin/python3
"""kiln serve's numbers: time to first /ping 200, forward latency at batch 1 and 4 next to
PyTorch's (same run, same thread count), and requests/s with p50/p99 latency for single-image NPY
requests at several concurrencies (wrk + post_npy.lua).

usage: /usr/bin/python3 serve/bench/serve_bench.py KILN_BIN [--arch resnet34] [--threads 2]
       [--duration 10] [--concurrency 1,8,64] [--max-batch 16] [--max-wait-ms 2] [--workdir DIR]
Needs Debian's python3 with torch/torchvision/numpy, and wrk. Prints a Markdown report."""
import argparse, json, os, re, signal, statistics, subprocess, sys, tempfile, time, urllib.request

import numpy as np
import torch
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))


def make_model_dir(kiln, arch, d):
    os.makedirs(d, exist_ok=True)
    torch.manual_seed(0)
    m = getattr(torchvision.models, arch)(num_classes=100).eval()
    torch.save(m.state_dict(), os.path.join(d, "model.pth"))
    subprocess.run([kiln, "import", os.path.join(d, "model.pth"), "--output",
                    os.path.join(d, "model.safetensors")], check=True, stdout=subprocess.DEVNULL)
    json.dump({"format": "kiln-model", "version": 1, "arch": arch, "num_classes": 100,
               "class_names": ["c%d" % i for i in range(100)], "mean": [0.507, 0.487, 0.441],
               "std": [0.267, 0.256, 0.276], "image_size": 32, "dataset": "synthetic"},
              open(os.path.join(d, "config.json"), "w"))
    return m


def post(port, body, timeout=60):
    req = urllib.request.Request("http://127.0.0.1:%d/invocations" % port, data=body,
                                 headers={"Content-Type": "application/x-npy"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def metric(port, name):
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10).read().decode()
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    return float(m.group(1))


def start_server(kiln, model_dir, port, args, log):
    t0 = time.monotonic()
    p = subprocess.Popen([kiln, "serve", "--model-dir", model_dir, "--host", "127.0.0.1",
                          "--port", str(port), "--threads", str(args.threads), "--no-access-log",
                          "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms)],
                         stdout=log, stderr=subprocess.STDOUT)
    first_connect = None
    for _ in range(12000):  # bounded: 60 s
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/ping" % port, timeout=2) as r:
                if r.status == 200:
                    return p, first_connect, time.monotonic() - t0
        except urllib.error.HTTPError as e:
            if first_connect is None:
                first_connect = time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.005)
    p.kill()
    raise SystemExit("kiln serve never became ready")


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def kiln_forward(port, x, reps):
    """Client latency of sequential requests and the server's own forward time (from /metrics)."""
    body = tempfile.SpooledTemporaryFile()
    np.save(body, x)
    body.seek(0)
    data = body.read()
    for _ in range(3):
        post(port, data)
    s0, c0 = metric(port, "kiln_batch_duration_seconds_sum"), metric(port, "kiln_batch_duration_seconds_count")
    lat = []
    for _ in range(reps):
        t = time.perf_counter()
        status, _ = post(port, data)
        lat.append(time.perf_counter() - t)
        assert status == 200
    s1, c1 = metric(port, "kiln_batch_duration_seconds_sum"), metric(port, "kiln_batch_duration_seconds_count")
    return statistics.median(lat), (s1 - s0) / (c1 - c0)


def torch_forward(m, x, reps):
    xt = torch.from_numpy(x)
    with torch.no_grad():
        for _ in range(3):
            torch.log_softmax(m(xt), 1)
        ts = []
        for _ in range(reps):
            t = time.perf_counter()
            torch.log_softmax(m(xt), 1)
            ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def ping_during(port, stop, out):
    """Worst /ping latency (new connection each time, as a health checker) while wrk runs."""
    import threading
    worst = 0.0
    while not stop.is_set():
        t = time.perf_counter()
        try:
            urllib.request.urlopen("http://127.0.0.1:%d/ping" % port, timeout=10).read()
        except OSError:
            worst = float("inf")
        worst = max(worst, time.perf_counter() - t)
        stop.wait(0.2)
    out.append(worst)


def wrk(port, body_path, conc, duration):
    env = dict(os.environ, KILN_BENCH_BODY=body_path)
    out = subprocess.run(["wrk", "-t", str(min(conc, 2)), "-c", str(conc), "-d", "%ds" % duration,
                          "--timeout", "30s", "--latency", "-s", os.path.join(HERE, "post_npy.lua"),
                          "http://127.0.0.1:%d/invocations" % port],
                         env=env, capture_output=True, text=True, timeout=duration + 60).stdout
    def lat(pct):
        m = re.search(r"^\s+%s%%\s+(\S+)" % pct, out, re.M)
        return m.group(1) if m else "?"
    rps = re.search(r"Requests/sec:\s+(\S+)", out).group(1)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: (.*)", out)
    return rps, lat(50), lat(99), bad.group(1) if bad else "0", errs.group(1) if errs else "none", out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kiln")
    ap.add_argument("--arch", default="resnet34")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--concurrency", default="1,8,64")
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--max-wait-ms", type=int, default=2)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = args.workdir or tempfile.mkdtemp(prefix="kiln_serve_bench_")
    model_dir = os.path.join(work, "model")
    m = make_model_dir(os.path.abspath(args.kiln), args.arch, model_dir)
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((1, 3, 32, 32)).astype(np.float32)
    x4 = rng.standard_normal((4, 3, 32, 32)).astype(np.float32)
    body_path = os.path.join(work, "single.npy")
    np.save(body_path, x1)

    port = free_port()
    log = open(os.path.join(work, "serve.log"), "w")
    p, first_connect, ready = start_server(os.path.abspath(args.kiln), model_dir, port, args, log)
    print("## kiln serve: %s, %d threads, max-batch %d, max-wait-ms %d" %
          (args.arch, args.threads, args.max_batch, args.max_wait_ms))
    print("- load average before: %s" % open("/proc/loadavg").read().split()[:3])
    print("- first answer to /ping (503 while loading): %.3f s after start; first 200: %.2f s" %
          (first_connect or float("nan"), ready))
    print()
    print("| forward | kiln request (client, median) | kiln forward (server, mean) | PyTorch %s forward (median) |" % torch.__version__)
    print("|---|---|---|---|")
    for name, x in (("batch 1", x1), ("batch 4", x4)):
        req, fwd = kiln_forward(port, x, args.reps)
        tt = torch_forward(m, x, args.reps)
        print("| %s | %.2f ms | %.2f ms | %.2f ms |" % (name, req * 1e3, fwd * 1e3, tt * 1e3))
    print()
    print("| concurrency | requests/s | p50 | p99 | non-2xx | socket errors | mean batch | worst /ping |")
    print("|---|---|---|---|---|---|---|---|")
    import threading
    for conc in [int(c) for c in args.concurrency.split(",")]:
        b0, n0 = metric(port, "kiln_batch_size_count"), metric(port, "kiln_batch_size_sum")
        stop, worst = threading.Event(), []
        pinger = threading.Thread(target=ping_during, args=(port, stop, worst))
        pinger.start()
        rps, p50, p99, bad, errs, raw = wrk(port, body_path, conc, args.duration)
        stop.set()
        pinger.join()
        b1, n1 = metric(port, "kiln_batch_size_count"), metric(port, "kiln_batch_size_sum")
        print("| %d | %s | %s | %s | %s | %s | %.2f | %.1f ms |" % (
            conc, rps, p50, p99, bad, errs, (n1 - n0) / max(1.0, b1 - b0), worst[0] * 1e3))
        sys.stdout.flush()
    t = time.monotonic()
    p.send_signal(signal.SIGTERM)
    rc = p.wait(timeout=60)
    print()
    print("- SIGTERM to exit: %.2f s, exit code %d" % (time.monotonic() - t, rc))
    print("- load average after: %s" % open("/proc/loadavg").read().split()[:3])


if __name__ == "__main__":
    main()
