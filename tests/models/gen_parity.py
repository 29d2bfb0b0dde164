#!/usr/bin/env python3
"""PyTorch parity fixtures for kiln's ResNets (run at test time by tests/models, never downloaded).

For one arch it writes into --out:
  model.pth              torch.save(state_dict) of a seeded random model (fc = --num-classes),
                         with batch-norm affine parameters and running stats randomised so that
                         eval mode exercises them
  input.npy, labels.npy  the batch (N,3,32,32) float32 and (N,) int64
  eval_log_softmax.npy   log_softmax(model(x)) in eval mode (float32; what `kiln predict` must give)
  fixtures.safetensors   every reference value, computed in float64 (PyTorch on a float64 copy of
                         the model) and stored rounded to float32:
      eval.logits, eval.log_softmax       eval mode
      train.logits, train.loss            train mode, one forward (loss = nll(log_softmax), mean)
      grad.<param>                        d loss / d param for EVERY parameter
      fwd.<buffer>                        running_mean/var/num_batches_tracked after that forward
      sgd1.<param>                        every parameter after the first SGD step (train mode)
      sgd.loss                            the loss of each of --steps SGD steps
      sgd.<key>                           every state_dict entry after those steps
    (After one step the weights depend only on accurate first gradients; later steps can be
    ill-conditioned at batch 8: a ReLU/max-pool kink crossed in one precision and not the other
    moves whole gradients, which err32 below measures.)
    plus, for every float quantity Q, the scalar "err32.Q": the max abs difference between
    PyTorch's own float32 results (NCHW and channels_last, two summation orders) and the
    float64 one. Tests derive their tolerance from it: kiln is held to the accuracy fp32
    arithmetic with another summation order actually reaches on that very quantity.
  The safetensors __metadata__ records arch, seed, batch, lr, momentum, weight_decay, steps.
"""
import argparse
import copy
import json
import os
import struct
import sys

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
    import torchvision
except ImportError as e:  # the caller turns this exit code into a clear test failure
    sys.stderr.write("gen_parity.py needs torch, torchvision and numpy (Debian: apt install "
                     "python3-torch python3-torchvision); import failed: %s\n" % e)
    sys.exit(3)


def write_safetensors(path, arrays, metadata):
    """Minimal safetensors writer (the format is a JSON header plus raw little-endian bytes)."""
    dtypes = {np.dtype("float32"): "F32", np.dtype("float64"): "F64", np.dtype("int64"): "I64"}
    header, blobs, offset = {"__metadata__": {k: str(v) for k, v in metadata.items()}}, [], 0
    for name, arr in arrays.items():
        arr = np.ascontiguousarray(arr)
        data = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtypes[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * ((8 - len(head) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def make_model(arch, num_classes, seed):
    torch.manual_seed(seed)
    model = getattr(torchvision.models, arch)(num_classes=num_classes)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(0.1 * torch.randn(c, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
    return model


def run(model, x, y, lr, momentum, wd, steps):
    """All reference quantities for one model copy (float32 or float64), as numpy arrays."""
    out = {}
    m = copy.deepcopy(model)
    m.eval()
    with torch.no_grad():
        logits = m(x)
        out["eval.logits"] = logits
        out["eval.log_softmax"] = F.log_softmax(logits, dim=1)
    m.train()
    logits = m(x)
    loss = F.nll_loss(F.log_softmax(logits, dim=1), y)
    loss.backward()
    out["train.logits"] = logits.detach()
    out["train.loss"] = loss.detach().reshape(1)
    for name, p in m.named_parameters():
        out["grad." + name] = p.grad
    for name, b in m.named_buffers():
        out["fwd." + name] = b

    m = copy.deepcopy(model)
    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=lr, momentum=momentum, weight_decay=wd)
    losses = []
    for step in range(steps):
        opt.zero_grad()
        loss = F.nll_loss(F.log_softmax(m(x), dim=1), y)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
        if step == 0:
            for name, p in m.named_parameters():
                out["sgd1." + name] = p.detach().clone()
    out["sgd.loss"] = torch.stack(losses)
    for name, t in m.state_dict().items():
        out["sgd." + name] = t
    return {k: v.detach().cpu().numpy() for k, v in out.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet34", "resnet50"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--num-classes", type=int, default=100)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    # lr is large enough that 3 steps move the weights by far more than the tolerance.
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--steps", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("KILN_PARITY_THREADS", "2")))
    os.makedirs(a.out, exist_ok=True)

    model = make_model(a.arch, a.num_classes, a.seed)
    g = torch.Generator().manual_seed(a.seed + 2)
    x = torch.randn(a.batch, 3, 32, 32, generator=g)
    y = torch.randint(0, a.num_classes, (a.batch,), generator=g)

    torch.save(model.state_dict(), os.path.join(a.out, "model.pth"))
    np.save(os.path.join(a.out, "input.npy"), x.numpy())
    np.save(os.path.join(a.out, "labels.npy"), y.numpy())

    r32 = run(model, x, y, a.lr, a.momentum, a.weight_decay, a.steps)
    # PyTorch's channels_last path sums in yet another order: a second fp32 witness.
    r32cl = run(copy.deepcopy(model).to(memory_format=torch.channels_last),
                x.contiguous(memory_format=torch.channels_last), y, a.lr, a.momentum,
                a.weight_decay, a.steps)
    r64 = run(copy.deepcopy(model).double(), x.double(), y, a.lr, a.momentum, a.weight_decay,
              a.steps)
    np.save(os.path.join(a.out, "eval_log_softmax.npy"), r32["eval.log_softmax"])

    arrays = {"input": x.numpy(), "labels": y.numpy()}
    for k, v64 in r64.items():
        if v64.dtype == np.float64:
            arrays[k] = v64.astype(np.float32)
            err = max(np.abs(r[k].astype(np.float64) - v64).max() if v64.size else 0.0
                      for r in (r32, r32cl))
            arrays["err32." + k] = np.array([err], dtype=np.float64)
        else:
            arrays[k] = v64  # num_batches_tracked (int64): exact
    meta = {"arch": a.arch, "seed": a.seed, "batch": a.batch, "num_classes": a.num_classes,
            "lr": a.lr, "momentum": a.momentum, "weight_decay": a.weight_decay,
            "steps": a.steps, "torch": torch.__version__}
    write_safetensors(os.path.join(a.out, "fixtures.safetensors"), arrays, meta)


if __name__ == "__main__":
    main()
