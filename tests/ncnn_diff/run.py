#!/usr/bin/env python3
"""Differential test: our runtime (`eq infer`) against the real ncnn (PyPI).

Usage: python3 tests/ncnn_diff/run.py [--ncnn-only] [--threads N] [MODEL ...]

For every model it feeds the same seeded random input (and, for
yolo-fastest, a few images) to ncnn and to `eq infer`, and compares every
output blob plus a few intermediate ones (the inputs of the output layers,
e.g. the logits before Softmax and the SSD mbox_* blobs). The error of a blob
is max|ours - ncnn| / max|ncnn|; a model passes when every blob is within
1e-4 (1e-5 for the single-op nets of op_nets.py). Benchmark params get
deterministic random weights (see ncnn_bin.py), cached under
target/ncnn_diff/.

Environment:
  EQ_BIN            path to the `eq` binary (default target/release/eq)
  EQ_SHARED         the shared data directory (default <repo>/../shared)
  EQ_DIFF_SKIP      comma-separated model names to skip (e.g. vgg16)
  EQ_DIFF_OUTPUTS_ONLY=1  compare only the net outputs, no intermediates
  CI=true           a missing shared file is a failure instead of a skip
Exit status is non-zero if any model failed.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import ncnn_bin  # noqa: E402
import op_nets  # noqa: E402
import op_nets_elem  # noqa: E402
import op_nets_loader  # noqa: E402
import op_nets_detect  # noqa: E402
import op_nets_int8ops  # noqa: E402
import op_nets_matrix  # noqa: E402
import op_nets_models  # noqa: E402
import op_nets_shape  # noqa: E402

REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
TOLERANCE = 1e-4
DETECTION_LAYERS = {"DetectionOutput", "YoloDetectionOutput", "Yolov3DetectionOutput"}
# Outputs sized by ncnn to the result count, by us to the most possible (padding after it).
PADDED_LAYERS = {"Proposal"}


@dataclass
class Model:
    name: str
    param: str  # relative to the shared directory
    bin: str = None  # relative to shared; None = generate random weights
    shape: tuple = (3, 224, 224)  # input (c, h, w)
    input_range: tuple = (-1.0, 1.0)
    fp16_weights: bool = False  # only for generated weights
    extra_blobs: list = field(default_factory=list)
    generated_by_eq: bool = False  # param/bin written by `eq demo` (the README's main job)
    # Images (relative to shared) fed after the random input, resized to the input's h x w,
    # RGB, value = pixel / 255 (yolo-fastest's preprocessing).
    images: list = field(default_factory=list)
    # A net of single ops written here: generator(cache_dir) -> (param, bin, [inputs]).
    generator: object = None
    tolerance: float = TOLERANCE
    # Fewer detections from ncnn over all inputs fails: the case would test nothing.
    min_detections: int = 0
    # ncnn runs its int8 layers as int8 (standalone Quantize feeding an int8 Convolution).
    int8_inference: bool = False
    # ncnn's packed layout (off: its x86 Requantize uses one group's scales for a whole pack).
    packing: bool = True


BENCH = "models/ncnn-benchmark"
YOLO_IMAGES = [f"data/images/imagenet_val1300/images/ILSVRC2012_val_0000{n}.JPEG"
               for n in ("0556", "1133", "1750", "2581", "2810")]
SSD_EXTRA = ["mbox_loc", "mbox_conf", "mbox_priorbox", "mbox_conf_flatten"]

MODELS = [
    Model("alexnet", f"{BENCH}/alexnet.param", shape=(3, 227, 227)),
    Model("googlenet", f"{BENCH}/googlenet.param"),
    Model("mobilenet", f"{BENCH}/mobilenet.param"),
    Model("mobilenet_ssd", f"{BENCH}/mobilenet_ssd.param", shape=(3, 300, 300),
          extra_blobs=SSD_EXTRA),
    Model("mobilenet_v2", f"{BENCH}/mobilenet_v2.param"),
    Model("resnet18", f"{BENCH}/resnet18.param"),
    Model("resnet50", f"{BENCH}/resnet50.param"),
    Model("squeezenet", f"{BENCH}/squeezenet.param", shape=(3, 227, 227)),
    Model("squeezenet_ssd", f"{BENCH}/squeezenet_ssd.param", shape=(3, 300, 300),
          extra_blobs=SSD_EXTRA),
    # 553 MB of fp32 weights; fp16-tagged halves the file (ncnn widens at load).
    Model("vgg16", f"{BENCH}/vgg16.param", fp16_weights=True),
    # The project's own demo model, the one the README's main command runs.
    Model("eq_demo", None, shape=(3, 32, 32), generated_by_eq=True, extra_blobs=["fc", "conv0"]),
    # Real weights. Inputs in the range each model's preprocessing produces.
    Model("squeezenet_v1.1", "data/models/squeezenet_v1.1/squeezenet_v1.1.param",
          "data/models/squeezenet_v1.1/squeezenet_v1.1.fp32.bin", (3, 227, 227), (-128.0, 128.0)),
    Model("squeezenet_v1.1_fp16", "data/models/squeezenet_v1.1/squeezenet_v1.1.param",
          "data/models/squeezenet_v1.1/squeezenet_v1.1.fp16.bin", (3, 227, 227), (-128.0, 128.0)),
    Model("mobilenet_v2_real", "data/models/mobilenet_v2/mobilenet_v2.param",
          "data/models/mobilenet_v2/mobilenet_v2.fp32.bin", (3, 224, 224), (-2.0, 2.0)),
    Model("mobilefacenet", "data/models/mobilefacenet/mobilefacenet.param",
          "data/models/mobilefacenet/mobilefacenet.bin", (3, 112, 112), (0.0, 255.0)),
    # A real detector with fp16 weights: Interp (nearest x2) and Yolov3DetectionOutput.
    # Random input finds nothing (the empty result); the images hold people, animals, cars.
    Model("yolo-fastest-1.1", "data/models/yolo-fastest-1.1/yolo-fastest-1.1.param",
          "data/models/yolo-fastest-1.1/yolo-fastest-1.1.bin", (3, 320, 320), (0.0, 1.0),
          extra_blobs=["123_882"], images=YOLO_IMAGES, min_detections=10),
    # Single-op nets (op_nets.py), compared to 1e-5.
    Model("interp_nearest", None, generator=op_nets.interp_net("nearest"), tolerance=1e-5),
    Model("interp_bilinear", None, generator=op_nets.interp_net("bilinear"), tolerance=1e-5),
    Model("interp_bicubic", None, generator=op_nets.interp_net("bicubic"), tolerance=1e-5),
    Model("interp_dynamic", None, generator=op_nets.interp_dynamic_net(), tolerance=1e-5),
    Model("crop_offsets", None, generator=op_nets_shape.crop_net("offsets"), tolerance=1e-5),
    Model("crop_slices", None, generator=op_nets_shape.crop_net("slices"), tolerance=1e-5),
    Model("crop_reference", None, generator=op_nets_shape.crop_net("reference"), tolerance=1e-5),
    Model("slice", None, generator=op_nets_shape.slice_net(), tolerance=1e-5),
    Model("padding_constant", None, generator=op_nets_shape.padding_net(0), tolerance=1e-5),
    Model("padding_replicate", None, generator=op_nets_shape.padding_net(1), tolerance=1e-5),
    Model("padding_reflect", None, generator=op_nets_shape.padding_net(2), tolerance=1e-5),
    Model("tile", None, generator=op_nets_shape.tile_net(), tolerance=1e-5),
    Model("deconvolution_fp32", None, generator=op_nets_shape.deconv_net(False, False),
          tolerance=1e-5),
    Model("deconvolution_fp16", None, generator=op_nets_shape.deconv_net(False, True),
          tolerance=1e-5),
    Model("deconvolution_depthwise_fp32", None, generator=op_nets_shape.deconv_net(True, False),
          tolerance=1e-5),
    Model("deconvolution_depthwise_fp16", None, generator=op_nets_shape.deconv_net(True, True),
          tolerance=1e-5),
    Model("deconvolution_large", None, tolerance=1e-5,
          generator=op_nets_shape.deconv_net(False, False, cases=8, large=True)),
    Model("deconvolution_depthwise_large", None, tolerance=1e-5,
          generator=op_nets_shape.deconv_net(True, False, cases=8, large=True)),
    Model("deconvolution_dynamic", None, generator=op_nets_shape.deconv_dynamic_net(),
          tolerance=1e-5),
    Model("yolov3_three_scales", None, min_detections=20, tolerance=1e-5,
          generator=op_nets.yolov3_net("yolov3_three_scales", 6, [(5, 4, 32), (10, 8, 16),
                                                                  (20, 16, 8)])),
    Model("yolov3_one_class", None, min_detections=5, tolerance=1e-5,
          generator=op_nets.yolov3_net("yolov3_one_class", 1, [(7, 5, 16)], mask_as_bits=True)),
    # Activations, element-wise and reshaping ops (op_nets_elem.py), compared to 1e-5.
    *[Model(name, None, generator=gen, tolerance=1e-5) for name, gen in op_nets_elem.nets()],
    Model("reshape_expr", None, generator=op_nets_loader.reshape_expr_net(), tolerance=1e-5),
    Model("interp_expr", None, generator=op_nets_loader.interp_expr_net(), tolerance=1e-5),
    Model("crop_expr", None, generator=op_nets_loader.crop_expr_net(), tolerance=1e-5),
    Model("loader_forms", None, generator=op_nets_loader.loader_forms_net(), tolerance=1e-5),
    Model("quantize_forms", None, generator=op_nets_detect.quant_net("quantize"), tolerance=1e-5),
    Model("dequantize_forms", None, generator=op_nets_detect.quant_net("dequantize"),
          tolerance=1e-5),
    Model("requantize_forms", None, generator=op_nets_detect.quant_net("requantize"),
          tolerance=1e-5, packing=False),
    Model("yolo_voc", None, min_detections=20, tolerance=1e-5,
          generator=op_nets_detect.yolo_net("yolo_voc", 20, 5, [(13, 13)], threshold=0.1)),
    Model("yolo_two_maps", None, min_detections=20, tolerance=1e-5,
          generator=op_nets_detect.yolo_net("yolo_two_maps", 3, 2, [(7, 5), (3, 4)], nms=0.3)),
    Model("yolo_one_class", None, min_detections=5, tolerance=1e-5,
          generator=op_nets_detect.yolo_net("yolo_one_class", 1, 1, [(6, 6)], threshold=0.5)),
    Model("proposal_forms", None, tolerance=1e-5, generator=op_nets_detect.proposal_net(
        "proposal_forms", [(5, 4, 64, 80, 1.0), (9, 7, 112, 150, 0.6), (3, 3, 48, 48, 2.0),
                           (14, 10, 160, 224, 1.0)],
        "0=16 1=16 2=60 3=25 4=0.7 5=8")),
    Model("proposal_defaults", None, tolerance=1e-5, generator=op_nets_detect.proposal_net(
        "proposal_defaults", [(12, 9, 150, 200, 1.0), (4, 6, 90, 60, 1.5)], "4=0.5",
        two_outputs=False)),
    Model("roipooling_forms", None, generator=op_nets_detect.roi_net("roipooling"),
          tolerance=1e-5),
    Model("psroipooling_forms", None, generator=op_nets_detect.roi_net("psroipooling"),
          tolerance=1e-5),
    Model("quant_mixed", None, generator=op_nets_detect.quant_mixed_net(), tolerance=1e-5,
          int8_inference=True, packing=False),
    Model("layer_norm", None, generator=op_nets_matrix.layer_norm_net(), tolerance=1e-5),
    Model("rms_norm", None, generator=op_nets_matrix.rms_norm_net(), tolerance=1e-5),
    Model("group_norm", None, generator=op_nets_matrix.group_norm_net(), tolerance=1e-5),
    Model("instance_norm", None, generator=op_nets_matrix.instance_norm_net(), tolerance=1e-5),
    Model("reduction", None, generator=op_nets_matrix.reduction_net(), tolerance=1e-5),
    Model("softmax", None, generator=op_nets_matrix.softmax_net(), tolerance=1e-5),
    Model("memory_data", None, generator=op_nets_matrix.memory_data_net(), tolerance=1e-5),
    Model("embed", None, generator=op_nets_matrix.embed_net(), tolerance=1e-5),
    Model("matmul", None, generator=op_nets_matrix.matmul_net(), tolerance=1e-5),
    Model("gemm", None, generator=op_nets_matrix.gemm_net(), tolerance=1e-5),
    Model("multi_head_attention", None, generator=op_nets_matrix.multi_head_attention_net(),
          tolerance=1e-5),
    # The newer layers as models use them (op_nets_models.py), random weights.
    Model("yolo_like", None, generator=op_nets_models.net("yolo_like")),
    Model("unet_like", None, generator=op_nets_models.net("unet_like")),
    *[Model(name, None, generator=gen, tolerance=1e-5, int8_inference=int8)
      for name, gen, int8 in op_nets_int8ops.nets()],
]


class Skip(Exception):
    pass


class Failure(Exception):
    pass


def shared_dir():
    if os.environ.get("EQ_SHARED"):
        return os.environ["EQ_SHARED"]
    candidates = [os.path.join(REPO, "..", "shared"),
                  os.path.join(REPO, "..", "..", "shared")]  # git worktrees under <x>/wt/
    for path in candidates:
        if os.path.isdir(path):
            return os.path.normpath(path)
    return os.path.normpath(candidates[0])


def shared_file(shared, rel):
    path = os.path.join(shared, rel)
    if not os.path.exists(path):
        if os.environ.get("CI") == "true":
            raise Failure(f"missing {path}")
        raise Skip(f"missing {path}")
    return path


# --------------------------------------------------------------------- ncnn


def blobs_to_compare(layers, with_intermediates, extra):
    """Net outputs first, then (optionally) the inputs of the output layers.

    Returns (blobs, outputs, detection output blobs)."""
    consumed = {b for l in layers for b in l.bottoms}
    produced = {b for l in layers for b in l.tops}
    inputs = {b for l in layers if l.type == "Input" for b in l.tops}
    outputs = [b for l in layers for b in l.tops if b not in consumed]
    detection = {b for l in layers if l.type in DETECTION_LAYERS for b in l.tops}
    wanted = list(outputs)
    if with_intermediates:
        for layer in layers:
            if any(t in outputs for t in layer.tops):
                wanted += [b for b in layer.bottoms if b not in inputs]
        wanted += [b for b in extra if b in produced]
    return list(dict.fromkeys(wanted)), outputs, detection


def run_ncnn(param, binary, inputs, blobs, outputs, int8_inference=False, packing=True):
    """Run ncnn in plain fp32 on one thread; returns {blob: ndarray}."""
    import ncnn

    net = ncnn_bin.make_net(num_threads=1)
    net.opt.use_int8_inference = int8_inference
    net.opt.use_packing_layout = packing
    if net.load_param(param) != 0:
        raise Failure("ncnn load_param failed")
    if sorted(net.output_names()) != sorted(outputs):
        raise Failure(f"outputs {outputs} differ from ncnn's {net.output_names()}")
    ret, consumed, size = ncnn_bin.load_counting(net, binary)
    if ret != 0 or consumed != size:
        raise Failure(f"ncnn load_model returned {ret}, read {consumed} of {size} bytes")
    ex = net.create_extractor()
    ex.set_light_mode(False)
    keep = []  # ncnn.Mat(ndarray) borrows the array; keep both alive
    for name, array in inputs.items():
        if array.dtype == np.int32:  # an int32 blob: its bits in an fp32 Mat
            array = array.view(np.float32)
        mat = ncnn.Mat(array).clone()  # clone: some first layers work in place
        keep.append((array, mat))
        if ex.input(name, mat) != 0:
            raise Failure(f"ncnn input {name} failed")
    results = {}
    for blob in blobs:
        ret, mat = ex.extract(blob)
        if ret != 0:
            raise Failure(f"ncnn extract {blob} returned {ret}")
        if mat.empty():  # e.g. DetectionOutput with no detections
            results[blob] = np.zeros((0, 6), np.float32)
        else:
            results[blob] = np.array(mat, dtype=np.float32, copy=True)
    return results


# ---------------------------------------------------------------------- eq


def eq_binary():
    path = os.environ.get("EQ_BIN") or os.path.join(REPO, "target", "release", "eq")
    return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


def run_eq(eq, param, binary, inputs, blobs, workdir, threads):
    cmd = [eq, "infer", "--param", param, "--bin", binary]
    for i, (name, array) in enumerate(inputs.items()):
        path = os.path.join(workdir, f"in{i}.npy")
        np.save(path, array.astype(np.float32))  # int32: the values as floats
        cmd += ["--in", f"{name}={path}"]
    out_paths = {}
    for i, blob in enumerate(blobs):
        out_paths[blob] = os.path.join(workdir, f"out{i}.npy")
        cmd += ["--out", f"{blob}={out_paths[blob]}"]
    if threads:
        cmd += ["--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise Failure(f"eq infer exited {proc.returncode}: {' | '.join(tail)}")
    results = {}
    for blob, path in out_paths.items():
        if not os.path.exists(path):
            raise Failure(f"eq infer wrote no {path} for blob {blob}")
        results[blob] = np.load(path)
    return results


# ----------------------------------------------------------------- compare


def relative_error(ours, ref):
    """max|ours - ref| / max|ref| (absolute when ref is all zero)."""
    if ours.shape != ref.shape:
        raise Failure(f"shape {ours.shape} != ncnn {ref.shape}")
    if ref.size == 0:
        return 0.0
    ours = ours.astype(np.float64)
    ref = ref.astype(np.float64)
    if not np.all(np.isfinite(ours)):
        return float("inf")
    scale = np.abs(ref).max()
    diff = np.abs(ours - ref).max()
    return float(diff / scale) if scale > 0 else float(diff)


def detection_rows(array):
    """Rows (label, score, x0, y0, x1, y1) by descending score, without the
    padding rows (label < 0) a fixed-size output may carry."""
    rows = np.asarray(array, dtype=np.float64)
    if rows.size == 0:
        return np.zeros((0, 6))
    if rows.ndim != 2 or rows.shape[1] != 6:
        if rows.size % 6:
            raise Failure(f"detection output of shape {rows.shape} is not rows of 6")
        rows = rows.reshape(-1, 6)
    rows = rows[rows[:, 0] >= 0]
    return rows[np.argsort(-rows[:, 1], kind="stable")]


def detection_error(ours, ref):
    """Worst |difference| of score and box over matched detections.

    Rows are matched, not compared in sorted order: random-weight SSDs give
    scores a few 1e-6 apart, which rounding may reorder. Scores and
    normalised coordinates are O(1), so the error is absolute.
    """
    ours, ref = detection_rows(ours), detection_rows(ref)
    if len(ours) != len(ref):
        raise Failure(f"{len(ours)} detections, ncnn has {len(ref)}")
    unused = list(range(len(ours)))
    worst = 0.0
    for row in ref:
        candidates = [i for i in unused if ours[i, 0] == row[0]]
        diffs = [np.abs(ours[i, 1:] - row[1:]).max() for i in candidates]
        if not diffs or min(diffs) > TOLERANCE:
            raise Failure(f"no match for ncnn detection {np.round(row, 5).tolist()}")
        best = int(np.argmin(diffs))
        worst = max(worst, diffs[best])
        unused.remove(candidates[best])
    return float(worst)


# --------------------------------------------------------------------- main


def make_inputs(model, layers):
    rng = np.random.Generator(np.random.PCG64(ncnn_bin.model_seed("input:" + model.name)))
    lo, hi = model.input_range
    names = [t for l in layers if l.type == "Input" for t in l.tops]
    return {n: rng.uniform(lo, hi, model.shape).astype(np.float32) for n in names}


def image_inputs(path, model, layers):
    """One image as every Input: resized to (h, w) bilinear, RGB, pixel / 255."""
    try:
        from PIL import Image
    except ImportError:
        message = "the images need Pillow (pip install pillow)"
        raise (Failure if os.environ.get("CI") == "true" else Skip)(message)
    _, h, w = model.shape
    image = Image.open(path).convert("RGB").resize((w, h), Image.BILINEAR)
    array = (np.asarray(image, dtype=np.float32) / 255.0).transpose(2, 0, 1).copy()
    names = [t for l in layers if l.type == "Input" for t in l.tops]
    return {n: array for n in names}


def trim_padding(ours, ref):
    """Our Proposal outputs (rois `n x 1 x 4`, scores `n x 1 x 1`) without the padding
    channels after the last proposal (roi -1, -1, -1, -1), for ncnn's count of them."""
    count = 0 if ref.size == 0 else ref.shape[0]
    if ours.shape[-1] == 4 and not np.all(ours[count:] == -1.0):
        raise Failure(f"more proposals than ncnn's {count}")
    return ours[:count], ref if ref.size else ours[:0]


def compare(blobs, detection, ours, ref, tolerance, padded=()):
    """(worst error, its blob, failures) over the blobs of one input."""
    worst, worst_blob, bad = 0.0, blobs[0], []
    for blob in blobs:
        try:
            if blob in padded:
                ours_blob, ref_blob = trim_padding(ours[blob], ref[blob])
                ours, ref = dict(ours), dict(ref)
                ours[blob], ref[blob] = ours_blob, ref_blob
            if blob in detection:
                err = detection_error(ours[blob], ref[blob])
            else:
                err = relative_error(ours[blob], ref[blob])
        except Failure as e:
            bad.append(f"{blob}: {e}")
            continue
        if not err <= tolerance:
            bad.append(f"{blob}: error {err:.3g}")
        if not err <= worst:
            worst, worst_blob = err, blob
    return worst, worst_blob, bad


def run_model(model, args, shared, cache_dir, eq):
    runs = None
    if model.generator:
        param, binary, runs = model.generator(cache_dir)
    elif model.generated_by_eq:
        if eq is None:
            raise Failure("eq binary not found (cargo build --release -p eq-tools, or set EQ_BIN)")
        out = os.path.join(cache_dir, model.name)
        subprocess.run([eq, "demo", "--out", out], check=True, capture_output=True)
        param, binary = os.path.join(out, "demo.param"), os.path.join(out, "demo.bin")
    elif model.bin:
        param = shared_file(shared, model.param)
        binary = shared_file(shared, model.bin)
    else:
        param = shared_file(shared, model.param)
        binary, _ = ncnn_bin.cached_bin(param, model.name, cache_dir, model.fp16_weights)
    layers = ncnn_bin.parse_param(open(param).read())
    with_intermediates = os.environ.get("EQ_DIFF_OUTPUTS_ONLY") != "1"
    blobs, outputs, detection = blobs_to_compare(layers, with_intermediates, model.extra_blobs)
    if runs is None:
        runs = [make_inputs(model, layers)]
        runs += [image_inputs(shared_file(shared, rel), model, layers) for rel in model.images]

    worst, worst_blob, bad = 0.0, blobs[0], []
    ncnn_time = eq_time = 0.0
    detections = 0
    for k, inputs in enumerate(runs):
        t0 = time.time()
        ref = run_ncnn(param, binary, inputs, blobs, outputs, model.int8_inference,
                       model.packing)
        ncnn_time += time.time() - t0
        detections += sum(len(detection_rows(ref[b])) for b in detection)
        if args.ncnn_only:
            if k == 0:
                shapes = ", ".join(f"{b}{list(ref[b].shape)}" for b in blobs)
            continue
        if eq is None:
            raise Failure("eq binary not found (cargo build --release -p eq-tools, or set EQ_BIN)")

        workdir = tempfile.mkdtemp(prefix=f"{model.name}-", dir=cache_dir)
        try:
            t0 = time.time()
            ours = run_eq(eq, param, binary, inputs, blobs, workdir, args.threads)
            eq_time += time.time() - t0
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

        padded = {b for l in layers if l.type in PADDED_LAYERS for b in l.tops}
        err, blob, failures = compare(blobs, detection, ours, ref, model.tolerance, padded)
        where = f"input {k}: " if len(runs) > 1 else ""
        bad += [where + f for f in failures]
        if not err <= worst:
            worst, worst_blob = err, (where + blob)
    if detections < model.min_detections:
        bad.append(f"ncnn found {detections} detections, the case needs {model.min_detections}")
    detail = f"ncnn {ncnn_time:.2f}s eq {eq_time:.2f}s"
    if len(runs) > 1:
        detail += f", {len(runs)} inputs"
    if detection:
        detail += f", {detections} detections"
    if args.ncnn_only:
        if bad:
            raise Failure("; ".join(bad))
        return None, None, f"ncnn only {ncnn_time:.2f}s; {shapes}; {detail}"
    if bad:
        raise Failure(f"worst {worst:.2e} ({worst_blob}); " + "; ".join(bad))
    return worst, worst_blob, detail


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="*", help="only these models (default: all)")
    parser.add_argument("--ncnn-only", action="store_true",
                        help="generate weights and run ncnn only (no comparison)")
    parser.add_argument("--threads", type=int, default=0, help="pass --threads N to eq infer")
    args = parser.parse_args()

    return run_suite(MODELS, args, run_model_text, 22)


def run_model_text(model, args, shared, cache_dir, eq):
    worst, blob, detail = run_model(model, args, shared, cache_dir, eq)
    worst_text = "" if worst is None else f"worst {worst:.2e} ({blob})  "
    return worst_text + detail


def run_suite(models, args, run_one, width):
    """Runs `run_one(model, args, shared, cache_dir, eq) -> text` for every selected model
    (`args.models`, minus EQ_DIFF_SKIP), one PASS / FAIL / SKIP line each, then the totals.
    Returns the exit status: 2 for bad arguments or no ncnn, 1 if any model failed."""
    try:
        import ncnn
    except ImportError:
        print("the `ncnn` Python package is required (pip install ncnn)", file=sys.stderr)
        return 2

    names = {m.name for m in models}
    unknown = [n for n in args.models if n not in names]
    if unknown:
        print(f"unknown model(s): {', '.join(unknown)}; known: {', '.join(sorted(names))}",
              file=sys.stderr)
        return 2
    skip = {s.strip() for s in os.environ.get("EQ_DIFF_SKIP", "").split(",") if s.strip()}
    shared = shared_dir()
    cache_dir = os.path.join(REPO, "target", "ncnn_diff")
    os.makedirs(cache_dir, exist_ok=True)
    eq = eq_binary()
    print(f"ncnn {ncnn.__version__}; eq: {eq or 'not found'}; shared: {shared}", flush=True)

    passed = failed = 0
    start = time.time()
    for model in models:
        if args.models and model.name not in args.models:
            continue
        t0 = time.time()
        name = f"{model.name:{width}s}"
        if model.name in skip:
            print(f"SKIP {name} (EQ_DIFF_SKIP)", flush=True)
            continue
        try:
            detail = run_one(model, args, shared, cache_dir, eq)
        except Skip as e:
            print(f"SKIP {name} ({e})", flush=True)
            continue
        except Exception as e:  # any error in one model must not stop the others
            failed += 1
            kind = "" if isinstance(e, Failure) else f"{type(e).__name__}: "
            print(f"FAIL {name} {time.time() - t0:6.1f}s  {kind}{e}", flush=True)
            continue
        passed += 1
        print(f"PASS {name} {time.time() - t0:6.1f}s  {detail}", flush=True)
    print(f"total {time.time() - start:.1f}s")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
