#!/usr/bin/env python3
"""Checks eq-tools' image preprocessing (host-tools/src/dataset.rs) against PIL.

Preprocesses a few images with PIL + numpy exactly as the headers of
shared/data/reference/*.txt describe, runs the Rust presets through the
`preprocess_dump` example, and prints the largest differences in 0..255 pixel units.

Three things are separated:
  decode  - JPEG decoding (the `image` crate vs PIL's libjpeg), seen through the
            squeezenet preset, which does not resize 227x227 images;
  resize  - our PIL-style bilinear resize alone: PIL resizes the pixels *we* decoded,
            so any difference is the resize's (expected: exactly 0);
  total   - the whole mobilenet_v2 pipeline vs PIL end to end (decode + resize).

Usage: python3 host-tools/tests/preprocess_check.py [--shared DIR] [-n 20]
Needs pillow and numpy. Exits non-zero if the resize alone differs.
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
WORKSPACE = os.path.dirname(os.path.dirname(HERE))

MEAN_SQ = np.array([104.0, 117.0, 123.0], np.float32)  # B, G, R
MEAN_MB = np.array([0.485, 0.456, 0.406], np.float32)
STD_MB = np.array([0.229, 0.224, 0.225], np.float32)


def rust_dump(preset, images):
    """Runs the Rust preset on `images`; returns an array (n, 3, h, w)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.f32")
        subprocess.run(
            ["cargo", "run", "-q", "-p", "eq-tools", "--example", "preprocess_dump", "--", preset, out]
            + images,
            cwd=WORKSPACE,
            check=True,
        )
        data = np.fromfile(out, dtype="<f4")
    return data.reshape(len(images), 3, -1)


def chw(a):
    return np.ascontiguousarray(a.transpose(2, 0, 1)).reshape(3, -1)


def pil_squeezenet(img):
    x = np.asarray(img, np.float32)[:, :, ::-1]  # BGR
    return chw(x - MEAN_SQ)


def pil_mobilenet(img):
    x = np.asarray(img.resize((224, 224), Image.BILINEAR), np.float32) / 255.0
    return chw((x - MEAN_MB) / STD_MB)


def pil_mobilefacenet(img):
    return chw(np.asarray(img, np.float32))


def report(name, diff):
    print(
        f"{name:34s} max |diff| {diff.max():8.4f}  mean {diff.mean():.5f}  "
        f"values differing by >= 0.5: {np.mean(diff >= 0.5) * 100:.3f} %"
    )
    return diff.max()


def main():
    ap = argparse.ArgumentParser()
    default_shared = os.environ.get("EQ_SHARED", os.path.join(WORKSPACE, "..", "shared"))
    ap.add_argument("--shared", default=default_shared)
    ap.add_argument("-n", type=int, default=20)
    args = ap.parse_args()

    val = os.path.join(args.shared, "data", "images", "imagenet_val1300", "images")
    imagenet = [os.path.join(val, f) for f in sorted(os.listdir(val))[: args.n]]
    pairs = os.path.join(args.shared, "data", "images", "lfw_112x112_pairs")
    with open(os.path.join(pairs, "pairs.txt")) as f:
        faces = sorted({p for line in f if line.strip() for p in line.split(",")[:2]})[: args.n]
    faces = [os.path.join(pairs, "images", p) for p in faces]

    pil = [Image.open(p).convert("RGB") for p in imagenet]

    # Decode: squeezenet does no resize on these 227x227 images.
    ours_sq = rust_dump("squeezenet", imagenet)
    ref_sq = np.stack([pil_squeezenet(im) for im in pil])
    report("decode (squeezenet, imagenet)", np.abs(ours_sq - ref_sq))

    # Resize alone: PIL resizes the pixels we decoded.
    ours_mb = rust_dump("mobilenet_v2", imagenet)
    scale = (255.0 * STD_MB)[None, :, None]  # normalised units -> pixel units
    ours_pixels = (ours_sq + MEAN_SQ[None, :, None])[:, ::-1, :]  # back to RGB
    ref_from_ours = []
    for px in ours_pixels:
        hwc = np.rint(px.reshape(3, 227, 227).transpose(1, 2, 0)).astype(np.uint8)
        ref_from_ours.append(pil_mobilenet(Image.fromarray(hwc, "RGB")))
    resize_max = report("resize alone (mobilenet_v2)", np.abs(ours_mb - np.stack(ref_from_ours)) * scale)

    # Whole pipeline.
    ref_mb = np.stack([pil_mobilenet(im) for im in pil])
    report("decode + resize (mobilenet_v2)", np.abs(ours_mb - ref_mb) * scale)

    # Faces: raw pixels, no resize.
    ours_face = rust_dump("mobilefacenet", faces)
    ref_face = np.stack([pil_mobilefacenet(Image.open(p).convert("RGB")) for p in faces])
    report("decode (mobilefacenet, lfw)", np.abs(ours_face - ref_face))

    if resize_max > 1e-3:
        print("FAIL: the resize differs from PIL's")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
