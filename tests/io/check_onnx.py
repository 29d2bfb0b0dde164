"""Checks kiln's ONNX files with independent tools: onnx.checker (full_check, Debian's
python3-onnx 1.12) and OpenCV's DNN module (python3-opencv 4.6), against kiln's own logits.

usage: check_onnx.py MODEL.onnx X.npy LOGITS.npy ARCH NUM_CLASSES
Exit 0 when every check passes; otherwise prints what differed and exits 1.
"""
import json
import sys

import cv2
import numpy as np
import onnx


def main():
    path, x_path, y_path, arch, classes = sys.argv[1:6]
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    meta = {p.key: p.value for p in model.metadata_props}
    problems = []
    if meta.get("arch") != arch:
        problems.append(f"metadata arch {meta.get('arch')!r}, expected {arch!r}")
    if meta.get("num_classes") != classes or len(json.loads(meta.get("classes", "[]"))) != int(classes):
        problems.append(f"metadata num_classes/classes do not say {classes}")
    for key in ("mean", "std"):
        if len(json.loads(meta.get(key, "[]"))) != 3:
            problems.append(f"metadata {key} is not 3 numbers: {meta.get(key)!r}")
    if not meta.get("kiln_version"):
        problems.append("no kiln_version in metadata")
    if [i.name for i in model.graph.input] != ["input"] or [o.name for o in model.graph.output] != ["logits"]:
        problems.append("graph input/output are not 'input'/'logits'")
    if model.graph.input[0].type.tensor_type.shape.dim[0].dim_param != "N":
        problems.append("batch dimension is not symbolic")
    names = {t.name for t in model.graph.initializer}
    for must in ("conv1.weight", "fc.weight", "fc.bias", "layer4.1.conv2.weight"):
        if must not in names:
            problems.append(f"initializer {must} missing (torchvision names)")

    x = np.load(x_path)
    expected = np.load(y_path)
    net = cv2.dnn.readNetFromONNX(path)
    net.setInput(x)
    got = net.forward()
    # fp32 accuracy: OpenCV sums in another order (and fuses BN), so compare relative to the
    # logits' scale: 1e-4 of the largest |logit| (a wrong weight or stride moves them by O(1)).
    scale = float(np.abs(expected).max())
    err = float(np.abs(got - expected).max())
    tol = 1e-4 * max(scale, 1.0)
    print(f"{path}: opencv vs kiln max |diff| {err:.3g} (max |logit| {scale:.3g}, tolerance {tol:.3g})")
    if got.shape != expected.shape:
        problems.append(f"OpenCV output shape {got.shape}, kiln's {expected.shape}")
    elif not err <= tol:
        problems.append(f"OpenCV logits differ from kiln's by {err:.3g} > {tol:.3g}")
    for p in problems:
        print("FAIL:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
