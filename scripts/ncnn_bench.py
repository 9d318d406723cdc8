#!/usr/bin/env python3
"""Times ncnn (the PyPI `ncnn` package) on benchmark .param files the way benchncnn does:
all-zero weights (DataReaderFromEmpty), every input filled with 0.01, a fresh extractor
per run. Prints one line per model x threads and optionally writes JSON records with the
same keys as `eq-bench --json` (model, precision, threads, min_ms, median_ms, avg_ms).

Options are ncnn's defaults (its fastest CPU path): packing layout, sgemm and Winograd
convolution on, fp16 storage/arithmetic flags left at their defaults (they only take
effect on CPUs with fp16 support; not on x86_64 AVX2), int8 inference on for *_int8.param,
light mode, no Vulkan.

usage: ncnn_bench.py --model a.param[,b.param] --threads 1,2 --loops 20 --warmup 5 [--json F]
"""

import argparse
import json
import os
import statistics
import sys
import time

import ncnn
import numpy as np


def model_name(path):
    base = os.path.basename(path)
    for ext in (".param.bin", ".param"):
        if base.endswith(ext):
            return base[: -len(ext)]
    return base


def input_shape(param_path):
    """(name, w, h, c) of the first Input layer, from its 0=/1=/2= params."""
    with open(param_path) as f:
        for line in f:
            words = line.split()
            if words and words[0] == "Input":
                top = words[4]
                kv = dict(w.split("=", 1) for w in words[5:] if "=" in w)
                return top, int(kv.get("0", 0)), int(kv.get("1", 0)), int(kv.get("2", 0))
    raise SystemExit(f"{param_path}: no Input layer")


def bench(param, threads, loops, warmup, fp16_storage=True):
    """min, median and mean ms; `fp16_storage=False` turns off ncnn's fp16 weight storage
    (on by default: on x86 with F16C its InnerProduct keeps fp16 weights)."""
    net = ncnn.Net()
    net.opt.num_threads = threads
    net.opt.use_vulkan_compute = False
    if not fp16_storage:
        net.opt.use_fp16_storage = False
        net.opt.use_fp16_packed = False
        net.opt.use_fp16_arithmetic = False
    if net.load_param(param) != 0:
        raise SystemExit(f"{param}: ncnn cannot load it")
    net.load_model(ncnn.DataReaderFromEmpty())
    name, w, h, c = input_shape(param)
    data = ncnn.Mat(np.full((c, h, w), 0.01, dtype=np.float32))
    out_name = net.output_names()[0]

    def once():
        ex = net.create_extractor()
        ex.input(name, data)
        ret, _ = ex.extract(out_name)
        if ret != 0:
            raise SystemExit(f"{param}: extract failed ({ret})")

    for _ in range(warmup):
        once()
    ms = []
    for _ in range(loops):
        t = time.perf_counter()
        once()
        ms.append((time.perf_counter() - t) * 1e3)
    net.clear()
    return min(ms), statistics.median(ms), sum(ms) / len(ms)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", default="1")
    ap.add_argument("--loops", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--json")
    a = ap.parse_args()
    records = []
    for param in a.model.split(","):
        precision = "int8" if model_name(param).endswith("_int8") else "fp32"
        for t in (int(x) for x in a.threads.split(",")):
            mn, med, avg = bench(param, t, a.loops, a.warmup)
            name = model_name(param)
            print(f"{name:>20}  {precision:<4}  threads = {t:<2}  min = {mn:8.2f}  "
                  f"median = {med:8.2f}  avg = {avg:8.2f}", flush=True)
            records.append(dict(model=name, precision=precision, threads=t,
                                min_ms=mn, median_ms=med, avg_ms=avg,
                                engine="ncnn " + ncnn.__version__))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(records, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
