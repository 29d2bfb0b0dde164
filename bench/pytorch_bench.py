#!/usr/bin/env python3
"""PyTorch baseline for `kiln bench`: ResNet34(num_classes=100) at 32x32, batch 128, SGD(momentum 0.9, wd 5e-4).

train: torchvision resnet34(num_classes=100), random N(0,1) input and random labels, batch 128,
       log_softmax + nll_loss, SGD(lr=2e-4, momentum=0.9, weight_decay=5e-4); median of --steps
       steps after --warmup warm-ups. Prints `train_img_per_s=<median>` last.
infer: eval mode under torch.no_grad(), log_softmax(model(x)); prints `infer_ms_median=<ms>` last.
--memory-format channels_last converts model and input (PyTorch's faster CPU path).
Runs with Debian's torch 1.13 here and PyTorch 2.x elsewhere (no other dependency).
"""
import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F
import torchvision


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["train", "infer"])
    ap.add_argument("--arch", default="resnet34")
    ap.add_argument("--num-classes", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=None, help="default 128 (train), 1 (infer)")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=None, help="default 8 (train), 20 (infer)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="0 = torch's default")
    ap.add_argument("--memory-format", choices=["nchw", "channels_last"], default="nchw")
    ap.add_argument("--compile", action="store_true", help="torch.compile (PyTorch 2.x only)")
    a = ap.parse_args()
    train = a.mode == "train"
    batch = a.batch_size or (128 if train else 1)
    steps = a.steps or (8 if train else 20)
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = getattr(torchvision.models, a.arch)(num_classes=a.num_classes)
    x = torch.randn(batch, 3, a.image_size, a.image_size)
    y = torch.randint(0, a.num_classes, (batch,))
    if a.memory_format == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    fwd = torch.compile(model) if a.compile else model
    opt = torch.optim.SGD(model.parameters(), lr=2e-4, momentum=0.9, weight_decay=5e-4)

    def step():
        if train:
            model.train()
            opt.zero_grad()
            loss = F.nll_loss(F.log_softmax(fwd(x), dim=1), y)
            loss.backward()
            opt.step()
            return loss.item()
        model.eval()
        with torch.no_grad():
            return F.log_softmax(fwd(x), dim=1)[0, 0].item()

    print("pytorch %s %s: %s, batch %d, %dx%d, threads %d, %s%s, %d warm-up + %d timed steps"
          % (torch.__version__, a.mode, a.arch, batch, a.image_size, a.image_size,
             torch.get_num_threads(), a.memory_format, " compiled" if a.compile else "",
             a.warmup, steps), flush=True)
    for _ in range(a.warmup):
        step()
    ms = []
    for i in range(steps):
        t0 = time.perf_counter()
        v = step()
        dt = (time.perf_counter() - t0) * 1000.0
        ms.append(dt)
        print("step %d: %.2f ms, %.1f img/s, %.4f" % (i, dt, 1000.0 * batch / dt, v), flush=True)
    med = statistics.median(ms)
    print("median %.2f ms/step, min %.2f ms" % (med, min(ms)))
    if train:
        print("train_img_per_s=%.1f" % (1000.0 * batch / med))
    else:
        print("infer_img_per_s=%.1f" % (1000.0 * batch / med))
        print("infer_ms_median=%.3f" % med)
    return 0


if __name__ == "__main__":
    sys.exit(main())
