"""Runs a model with stock ncnn (the PyPI `ncnn` package) on .npy inputs.

usage: ncnn_run.py PARAM BIN IN_BLOB OUT_BLOB OUT.npy INPUT.npy...

Writes the outputs, flattened and stacked, as a float32 (n, len) array. Exit code 3 when
ncnn or numpy is not installed (the caller then skips).
"""
import sys

try:
    import ncnn
    import numpy as np
except ImportError as e:
    print(f"ncnn_run.py: {e}", file=sys.stderr)
    sys.exit(3)


def main():
    param, bin_, in_blob, out_blob, out_path, *inputs = sys.argv[1:]
    net = ncnn.Net()
    net.opt.num_threads = 1
    net.opt.use_int8_inference = True
    # fp16 storage would blur the comparison with our fp32 runtime.
    net.opt.use_fp16_storage = False
    net.opt.use_fp16_packed = False
    net.opt.use_fp16_arithmetic = False
    if net.load_param(param) != 0:
        sys.exit(f"ncnn cannot load {param}")
    if net.load_model(bin_) != 0:
        sys.exit(f"ncnn cannot load {bin_}")
    outs = []
    for path in inputs:
        x = np.ascontiguousarray(np.load(path), dtype=np.float32)
        m = ncnn.Mat(x)  # x must stay alive until extraction
        ex = net.create_extractor()
        ex.input(in_blob, m)
        ret, out = ex.extract(out_blob)
        if ret != 0:
            sys.exit(f"ncnn extract {out_blob} failed with {ret}")
        outs.append(np.array(out, dtype=np.float32).ravel())
    np.save(out_path, np.stack(outs))


main()
