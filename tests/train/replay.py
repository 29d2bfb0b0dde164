# PyTorch oracle for kiln's exact-replay test: trains torchvision's ResNet on a CIFAR-binary
# dataset exactly as `kiln train --no-shuffle --no-augment --val-size 0` does (step k uses
# records k*B .. (k+1)*B-1 in file order; ToTensor + Normalize; log_softmax + nll_loss; SGD),
# starting from the given weights, then compares every tensor with kiln's model.pth.
# Tolerance: per tensor, max|kiln - torch| <= 1e-3 x max(how far torch moved it, 1e-3 x max|w|)
# for parameters, 1e-4 x the same for running statistics; num_batches_tracked exactly.
# usage: replay.py MODE ...
#   init  ARCH CLASSES OUT.pth                  write torchvision's initial weights (seed 0)
#   check ARCH DATA_DIR INIT.pth KILN.pth B STEPS LR  train in torch and compare
import sys
import numpy as np
import torch
import torch.nn.functional as F
import torchvision

MEAN = (0.507, 0.487, 0.441)
STD = (0.267, 0.256, 0.276)

def make(arch, classes):
    return getattr(torchvision.models, arch)(num_classes=classes)

def main():
    torch.set_num_threads(2)
    mode = sys.argv[1]
    if mode == "init":
        arch, classes, out = sys.argv[2], int(sys.argv[3]), sys.argv[4]
        torch.manual_seed(0)
        torch.save(make(arch, classes).state_dict(), out)
        return
    arch, data_dir, init, kiln_pth = sys.argv[2:6]
    B, steps, lr = int(sys.argv[6]), int(sys.argv[7]), float(sys.argv[8])
    raw = np.fromfile(data_dir + "/train.bin", dtype=np.uint8).reshape(-1, 3074)
    labels = torch.from_numpy(raw[:, 1].astype(np.int64))
    pixels = torch.from_numpy(raw[:, 2:].reshape(-1, 3, 32, 32).copy())
    x_all = pixels.float().div(255)  # ToTensor
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    x_all = (x_all - mean) / std     # Normalize
    sd = torch.load(init)
    classes = sd["fc.weight"].shape[0]
    model = make(arch, classes)
    model.load_state_dict(sd)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    for k in range(steps):
        x, y = x_all[k * B:(k + 1) * B], labels[k * B:(k + 1) * B]
        loss = F.nll_loss(F.log_softmax(model(x), dim=1), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        print("torch step %d loss %.6f" % (k + 1, loss.item()))
    ref = model.state_dict()
    got = torch.load(kiln_pth)
    assert list(got.keys()) == list(ref.keys()), "key lists differ"
    worst = {}
    for name, r in ref.items():
        g = got[name]
        assert g.shape == r.shape, "%s: shape %s vs %s" % (name, tuple(g.shape), tuple(r.shape))
        if r.dtype == torch.int64:
            assert torch.equal(g, r), "%s: %s vs %s" % (name, g, r)
            continue
        init_t = sd[name]
        # Error relative to how far the tensor moved in training and to its size.
        err = (g - r).abs().max().item()
        scale = max((r - init_t).abs().max().item(), 1e-3 * r.abs().max().item(), 1e-6)
        kind = "running" if "running" in name else "param"
        worst[kind] = max(worst.get(kind, (0.0, "")), (err / scale, name))
        print("%-40s max|diff| %.3e  moved %.3e  rel %.3e" % (name, err, scale, err / scale))
    limits = {"param": 1e-3, "running": 1e-4}
    ok = True
    for kind, (rel, name) in worst.items():
        print("WORST %s %.3e %s (limit %.0e)" % (kind, rel, name, limits[kind]))
        ok = ok and rel <= limits[kind]
    sys.exit(0 if ok else 1)

main()
