#!/usr/bin/env python3
"""Fits the per-layer cost model from scripts/arm-cost-model.sh's counts and writes the TOML
that host-tools embeds (targets/costs/rk3399.toml).

Per (core, class, precision), over the shapes counted, with cycles = (single-layer model) -
(Input-only model of the same input shape):

    cycles = fixed_cycles + cycles_per_mac * MACs
             + cycles_per_output * output elements + cycles_per_input * input elements

The last two terms carry what does not scale with MACs (the epilogue per output; the input
quantization and im2col / Winograd input transform per input element), which a per-MAC rate
gets wrong for small-K layers (3-channel first convolutions, 16-channel 1x1). They are
fitted for the convolution classes only: in depthwise and InnerProduct layers both are
proportional to the MACs (or negligible), so they would be collinear with them.
The fit minimises the squared *relative* error (weights 1/cycles^2), so small layers, most
of a network's layers, count as much as big ones. A negative coefficient is dropped
(cycles_per_input first, then cycles_per_output, then fixed_cycles) and the rest refitted.
"""
import argparse
import json
import os

# TOML core name -> (count.sh JSON file, llvm-mca model in it, MHz)
CORES = [
    ("a53", "cortex-a53", "cortex-a55", 1500),
    ("a72", "cortex-a72", "cortex-a72", 1800),
    ("a53-mca-a53", "cortex-a53", "cortex-a53", 1500),
]
CLASSES = ["conv1x1", "conv3x3s1", "conv3x3s2", "dw3x3s1", "dw3x3s2", "innerproduct"]
PRECISIONS = ["fp32", "int8", "int7"]


def macs(cls, w, h, c, o):
    return {
        "conv1x1": w * h * c * o,
        "conv3x3s1": w * h * c * o * 9,
        "conv3x3s2": s2(w) * s2(h) * c * o * 9,
        "dw3x3s1": w * h * c * 9,
        "dw3x3s2": s2(w) * s2(h) * c * 9,
        "innerproduct": w * h * c * o,
    }[cls]


def s2(n):
    return (n - 1) // 2 + 1  # 3x3, pad 1, stride 2


def outputs(cls, w, h, c, o):
    return {
        "conv1x1": w * h * o,
        "conv3x3s1": w * h * o,
        "conv3x3s2": s2(w) * s2(h) * o,
        "dw3x3s1": w * h * c,
        "dw3x3s2": s2(w) * s2(h) * c,
        "innerproduct": o,
    }[cls]


# Terms fitted per class: 0 fixed, 1 MACs, 2 outputs, 3 inputs.
TERMS = {
    "conv1x1": [0, 1, 2, 3],
    "conv3x3s1": [0, 1, 2, 3],
    "conv3x3s2": [0, 1, 2, 3],
    "dw3x3s1": [0, 1],
    "dw3x3s2": [0, 1],
    "innerproduct": [0, 1],
}
NAMES = ["fixed_cycles", "cycles_per_mac", "cycles_per_output", "cycles_per_input"]
# Dropped first when negative.
DROP_ORDER = [3, 2, 0, 1]


def cycles(run_dir, qcpu, mca):
    with open(os.path.join(run_dir, qcpu + ".json")) as f:
        return json.load(f)["cpus"][mca]["cycles"]


def solve(a, b):
    """Gaussian elimination with partial pivoting; None when singular."""
    n = len(a)
    m = [row[:] + [b[i]] for i, row in enumerate(a)]
    for i in range(n):
        p = max(range(i, n), key=lambda r: abs(m[r][i]))
        if abs(m[p][i]) < 1e-300:
            return None
        m[i], m[p] = m[p], m[i]
        for r in range(n):
            if r != i:
                k = m[r][i] / m[i][i]
                m[r] = [x - k * y for x, y in zip(m[r], m[i])]
    return [m[i][n] / m[i][i] for i in range(n)]


def fit(xs, ys, terms):
    """Weighted least squares of y = sum(coef[t] * x[t]) with weights 1 / y^2; returns the
    four coefficients (0 for terms not fitted)."""
    pts = [(x, y) for x, y in zip(xs, ys) if y > 0]
    if not pts:
        raise SystemExit("no positive cycle counts to fit")
    # Scale the features so the normal equations are well conditioned.
    scale = [max(abs(x[t]) for x, _ in pts) or 1.0 for t in range(4)]
    terms = list(terms)
    while terms:
        a = [[sum(x[i] * x[j] / (scale[i] * scale[j] * y * y) for x, y in pts) for j in terms]
             for i in terms]
        b = [sum(x[i] / (scale[i] * y) for x, y in pts) for i in terms]
        c = solve(a, b)
        if c is not None and all(v >= 0 for v in c):
            out = [0.0] * 4
            for t, v in zip(terms, c):
                out[t] = v / scale[t]
            return out
        bad = [t for t, v in zip(terms, c or [-1] * len(terms)) if v < 0]
        terms.remove(next(t for t in DROP_ORDER if t in bad and t in terms))
    raise SystemExit("no non-negative fit")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--commit", required=True)
    ap.add_argument("--date", required=True)
    ap.add_argument("--elapsed", required=True)
    ap.add_argument("--binary-hash", required=True)
    a = ap.parse_args()

    rows = []
    with open(a.points) as f:
        for line in f:
            cls, w, h, c, o, prec, run, base, name = line.rstrip("\n").split("\t")
            rows.append((cls, int(w), int(h), int(c), int(o), prec, run, base, name))

    out = [
        "# Per-layer latency model of the RK3399 cores, read by host-tools/src/cost_model.rs",
        "# (`eq easyquant --cost a53|a72`). Generated by scripts/arm-cost-model.sh: do not edit.",
        "#",
        f"# Produced {a.date} from commit {a.commit} (eq-bench sha256 {a.binary_hash}), "
        f"{a.elapsed} s of counting.",
        "# MODELED cycles (armcycles: qemu-aarch64 block counts timed with llvm-mca), with NO",
        "# memory system: every load hits L1, so big-activation layers are optimistic.",
        "# One steady-state inference of an Input + one-layer model at 1 thread, minus the",
        "# Input-only model of the same input shape; fitted per core, class and precision (least",
        "# squares of the relative error, scripts/arm_cost_fit.py):",
        "#     cycles = fixed_cycles + cycles_per_mac * MACs + cycles_per_output * output elements",
        "#              + cycles_per_input * input elements      (the last two: convolutions only)",
        "#     ms = cycles / (freq_mhz * 1000)",
        "# a53: the qemu cortex-a53 run timed with LLVM's Cortex-A55 model (dual-issue in-order);",
        "# a53-mca-a53: the same run timed with LLVM's Cortex-A53 model (serialised write-back,",
        "# pessimistic); a72: the cortex-a72 run.",
        "# Classes: conv1x1 (1x1 stride-1 group-1 convolution: GEMM), conv3x3s1 (whatever the",
        "# runtime picks: Winograd or im2col GEMM), conv3x3s2 (im2col GEMM; host-tools also uses",
        "# it for other convolutions), dw3x3s1 / dw3x3s2 (ConvolutionDepthWise, 3x3), innerproduct.",
        "# The comment under each fit lists the points: MACs, cycles, the fit's relative error.",
        "",
    ]
    for core, qcpu, mca, mhz in CORES:
        out.append(f"[core.{core}]")
        out.append(f"freq_mhz = {mhz}")
        out.append(f'mca_model = "{mca}"')
        out.append("")
        for cls in CLASSES:
            mine = [r for r in rows if r[0] == cls]
            if not mine:
                continue
            out.append(f"[core.{core}.{cls}]")
            for prec in PRECISIONS:
                xs, ys = [], []
                for r in mine:
                    if r[5] != prec:
                        continue
                    w, h, c, o = r[1:5]
                    ys.append(cycles(r[6], qcpu, mca) - cycles(r[7], qcpu, mca))
                    xs.append([1, macs(cls, w, h, c, o), outputs(cls, w, h, c, o), w * h * c])
                if not xs:
                    continue
                coef = fit(xs, ys, TERMS[cls])
                fields = [f"{NAMES[1]} = {coef[1]:.5f}", f"{NAMES[0]} = {coef[0]:.0f}"]
                fields += [f"{NAMES[t]} = {coef[t]:.3f}" for t in (2, 3) if t in TERMS[cls]]
                out.append(f"{prec} = {{ {', '.join(fields)} }}")
                errs = ", ".join(
                    f"{x[1]} {y:.0f} "
                    + (f"{100 * (sum(k * v for k, v in zip(coef, x)) / y - 1):+.0f}%" if y > 0 else "nan")
                    for x, y in zip(xs, ys)
                )
                out.append(f"#   {errs}")
            out.append("")
    with open(a.out, "w") as f:
        f.write("\n".join(out).rstrip("\n") + "\n")


if __name__ == "__main__":
    main()
