# Oracle for kiln's data transforms: torchvision 0.14's functional transforms on PIL images
# (what the reference's CIFAR100 dataset feeds them). Reads params.txt and images.bin from DIR,
# writes rotated.bin (uint8 after crop/flip/rotate, CHW) and normalized.bin (float32 CHW).
# params.txt: one line per image: crop_top crop_left flip angle(float repr)
import sys, os
import numpy as np
import torch
import torchvision
from PIL import Image
import torchvision.transforms.functional as F
from torchvision.transforms import InterpolationMode

d = sys.argv[1]
assert torchvision.__version__.startswith("0.14"), torchvision.__version__
imgs = np.fromfile(os.path.join(d, "images.bin"), dtype=np.uint8).reshape(-1, 3, 32, 32)
params = [l.split() for l in open(os.path.join(d, "params.txt")).read().splitlines() if l.strip()]
assert len(params) == len(imgs)
mean, std = (0.507, 0.487, 0.441), (0.267, 0.256, 0.276)
rot, norm, test_norm = [], [], []
for img, (top, left, flip, angle) in zip(imgs, params):
    pil = Image.fromarray(np.ascontiguousarray(img.transpose(1, 2, 0)))
    test_norm.append(F.normalize(F.to_tensor(pil), mean, std).numpy())
    # RandomCrop(32, padding=4): F.pad(img, 4, fill=0) then F.crop(i, j, 32, 32)
    x = F.crop(F.pad(pil, 4, fill=0, padding_mode="constant"), int(top), int(left), 32, 32)
    if int(flip):
        x = F.hflip(x)
    # RandomRotation(15): F.rotate(img, angle, NEAREST, expand=False, center=None, fill=0)
    x = F.rotate(x, float(angle), InterpolationMode.NEAREST, False, None, 0)
    rot.append(np.asarray(x).transpose(2, 0, 1))
    norm.append(F.normalize(F.to_tensor(x), mean, std).numpy())
np.ascontiguousarray(np.stack(rot), dtype=np.uint8).tofile(os.path.join(d, "rotated.bin"))
np.ascontiguousarray(np.stack(norm), dtype=np.float32).tofile(os.path.join(d, "normalized.bin"))
np.ascontiguousarray(np.stack(test_norm), dtype=np.float32).tofile(os.path.join(d, "test_normalized.bin"))
print("ok", len(imgs))
