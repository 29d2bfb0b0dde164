#!/usr/bin/env python3
"""One training epoch of the reference pipeline in plain PyTorch, timed: the figure to put beside
`kiln train --epochs 1` on the same data and machine (bench/epoch.sh runs both).

The reference's work without Lightning's bookkeeping: CIFAR-100's binary train.bin (or `kiln synth`
output in the same layout), a 45,000 / 5,000 train / validation split, the reference's train
transform (RandomCrop(32, padding=4), RandomHorizontalFlip, RandomRotation(15), ToTensor,
Normalize) on both parts as the reference script does, torchvision resnet34 with 100 classes,
log_softmax + nll_loss, SGD(lr 2e-4, momentum 0.9, weight decay 5e-4), batch 128, one DataLoader
worker (kiln's default `--loader-workers 1`). Prints `epoch_s=` (train + validation wall time)."""
import argparse
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torchvision import transforms

MEAN, STD = (0.507, 0.487, 0.441), (0.267, 0.256, 0.276)


class CifarBinary(torch.utils.data.Dataset):
    """Records of CIFAR-100's binary layout: coarse label, fine label, 3072 bytes CHW."""

    def __init__(self, path, transform):
        raw = np.fromfile(path, dtype=np.uint8).reshape(-1, 3074)
        self.labels = raw[:, 1].astype(np.int64)
        self.images = raw[:, 2:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()
        self.transform = transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="folder with train.bin")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--train-images", type=int, default=45000)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tf = transforms.Compose([
        transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
        transforms.RandomRotation(15), transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    full = CifarBinary(os.path.join(args.data, "train.bin"), tf)
    n_val = len(full) - args.train_images
    train, val = torch.utils.data.random_split(full, [args.train_images, n_val])
    load = lambda ds, shuffle: torch.utils.data.DataLoader(
        ds, batch_size=args.batch_size, shuffle=shuffle, num_workers=args.workers)
    model = torchvision.models.resnet34(num_classes=100)
    opt = torch.optim.SGD(model.parameters(), lr=2e-4, momentum=0.9, weight_decay=5e-4)
    start = time.perf_counter()
    model.train()
    seen = 0
    for x, y in load(train, True):
        opt.zero_grad()
        loss = F.nll_loss(F.log_softmax(model(x), dim=1), y)
        loss.backward()
        opt.step()
        seen += len(y)
    train_s = time.perf_counter() - start
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in load(val, False):
            correct += int((model(x).argmax(1) == y).sum())
    total = time.perf_counter() - start
    print(f"train_images={seen} val_images={len(val)} train_s={train_s:.1f} val_acc={correct / max(1, len(val)):.4f}")
    print(f"train_img_per_s={seen / train_s:.1f}")
    print(f"epoch_s={total:.1f}")


if __name__ == "__main__":
    main()
