#!/usr/bin/env python3
"""Static cycle model of the shipped aarch64 GEMM micro-kernels on the RK3399 (run by
scripts/model-rk3399.sh, which builds the inputs).

For every kernel variant: find its symbol in the cross-built eq-bench, disassemble it, take
the innermost backward-branch loop holding the multiplies (the K loop), count the MACs per
iteration from its multiply instructions, and let llvm-mca time that loop on the core's
scheduling model. Per model: cycles = sum over Convolution layers of (tiles x K iterations
x cycles per iteration), at the cluster clock. No memory stalls, no packing / im2col /
requantization, no depthwise or fully connected layers: a lower bound on the GEMM time only.
"""

import argparse
import math
import re
import subprocess
import sys
from dataclasses import dataclass

CLUSTERS = {
    # name: (core for llvm-mca, clock MHz from targets/rk3399.toml, thread counts)
    "little": ("cortex-a53", 1500, (1, 4)),
    "big": ("cortex-a72", 1800, (1, 2)),
}


@dataclass
class Variant:
    precision: str  # fp32 | int8 | int7
    cluster: str
    symbol: str  # demangled path
    mr: int
    nr: int
    kstep: int  # K granularity of the packed panels


VARIANTS = [
    Variant("fp32", "little", "eq_runtime::kernels::gemm_f32::aarch64::micro_a53", 8, 8, 1),
    Variant("int8", "little", "eq_runtime::kernels::gemm_i8::aarch64::int8_a53", 4, 4, 16),
    Variant("int7", "little", "eq_runtime::kernels::gemm_i8::aarch64::int7_a53", 4, 4, 16),
    Variant("fp32", "big", "eq_runtime::kernels::gemm_f32::aarch64::micro_a72", 8, 8, 1),
    Variant("int8", "big", "eq_runtime::kernels::gemm_i8::aarch64::int8_a72", 4, 4, 16),
    Variant("int7", "big", "eq_runtime::kernels::gemm_i8::aarch64::int7_a72", 4, 4, 16),
]

BRANCHES = re.compile(r"^(b|b\.\w+|cbn?z|tbn?z)$")
# Multiply instructions and the MACs each does: 8 int8 products (smull/smlal, low or high
# half), 4 fp32 (fmla .4s).
MULTIPLIES = {"smull": 8, "smull2": 8, "smlal": 8, "smlal2": 8}


def run(cmd, stdin=None):
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=True).stdout


def symbol_range(binary, symbol, nm):
    for line in run([nm, "-S", "-C", binary]).splitlines():
        parts = line.split(maxsplit=3)
        if len(parts) == 4 and parts[3] == symbol:
            start = int(parts[0], 16)
            return start, start + int(parts[1], 16)
    sys.exit(f"model-rk3399: symbol {symbol} not in {binary}")


def disassemble(binary, start, stop, objdump):
    """[(address, mnemonic, operands)] with objdump's comments and symbol names removed."""
    out = run([objdump, "-d", "--no-show-raw-insn", f"--start-address={start:#x}",
               f"--stop-address={stop:#x}", binary])
    insns = []
    for line in out.splitlines():
        m = re.match(r"^\s+([0-9a-f]+):\s+(\S+)\s*(.*)$", line)
        if not m:
            continue
        ops = re.sub(r"\s*//.*$", "", m.group(3))
        ops = re.sub(r"\s*<[^>]*>", "", ops).strip()
        insns.append((int(m.group(1), 16), m.group(2), ops))
    return insns


def macs_of(mnemonic, operands):
    if mnemonic == "fmla" and ".4s" in operands:
        return 4
    return MULTIPLIES.get(mnemonic, 0)


def branch_target(operands):
    return int(operands.split(",")[-1].strip(), 16)


def k_loop(insns):
    """The innermost backward-branch loop with the most MACs: (body, MACs per iteration)."""
    loops = []
    for i, (addr, mn, ops) in enumerate(insns):
        if BRANCHES.match(mn) and branch_target(ops) < addr:
            start = branch_target(ops)
            loops.append([x for x in insns[: i + 1] if x[0] >= start])
    # Innermost: no other loop closes inside (a branch back into the body). Branches that
    # leave the body are exits or rare paths, taken as not taken.
    inner = [
        body for body in loops
        if not any(BRANCHES.match(mn) and body[0][0] <= branch_target(ops) < a
                   for a, mn, ops in body[:-1])
    ]
    if not inner:
        return None, 0
    best = max(inner, key=lambda body: sum(macs_of(mn, ops) for _, mn, ops in body))
    return best, sum(macs_of(mn, ops) for _, mn, ops in best)


def mca(body, mcpu, llvm_mca, iterations=500):
    lines = ["loop:"]
    for _, mn, ops in body:
        if BRANCHES.match(mn):
            # Retargeted to the label (register operands of cbz/tbz kept): llvm-mca ignores
            # control flow, so a branch only costs its issue slot either way.
            head = ops.split(",")[:-1]
            ops = ", ".join(head + ["loop"])
        lines.append(f"    {mn} {ops}")
    out = run([llvm_mca, "-mtriple=aarch64", f"-mcpu={mcpu}", f"-iterations={iterations}"],
              "\n".join(lines) + "\n")
    total = int(re.search(r"Total Cycles:\s+(\d+)", out).group(1))
    rthroughput = float(re.search(r"Block RThroughput:\s+([\d.]+)", out).group(1))
    return total / iterations, rthroughput


def read_shapes(path):
    """{model: [(layer, m, n, k)]} from `eq-bench --gemm-shapes` output."""
    models, current = {}, None
    with open(path) as f:
        for line in f:
            w = line.split()
            if w and w[0] == "model":
                current = models.setdefault(w[1], [])
            elif w and w[0] == "gemm":
                kv = dict(x.split("=") for x in w[2:])
                current.append((w[1], int(kv["m"]), int(kv["n"]), int(kv["k"])))
    return models


def gemm_cycles(shapes, v, cycles_per_iter, macs_per_iter):
    """Cycles of every layer's GEMM: edge tiles padded to mr x nr, K to kstep."""
    k_per_iter = macs_per_iter / (v.mr * v.nr)
    total = 0.0
    for _, m, n, k in shapes:
        tiles = math.ceil(m / v.mr) * math.ceil(n / v.nr)
        k_padded = math.ceil(k / v.kstep) * v.kstep
        total += tiles * (k_padded / k_per_iter) * cycles_per_iter
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--shapes", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--commit", default="unknown")
    ap.add_argument("--objdump", default="aarch64-linux-gnu-objdump")
    ap.add_argument("--nm", default="aarch64-linux-gnu-nm")
    ap.add_argument("--llvm-mca", default="llvm-mca")
    a = ap.parse_args()

    models = read_shapes(a.shapes)
    if not models:
        sys.exit(f"model-rk3399: no models in {a.shapes}")
    kernels = {}
    for v in VARIANTS:
        mcpu, mhz, _ = CLUSTERS[v.cluster]
        start, stop = symbol_range(a.binary, v.symbol, a.nm)
        body, macs = k_loop(disassemble(a.binary, start, stop, a.objdump))
        if not body or macs == 0 or macs % (v.mr * v.nr):
            sys.exit(f"model-rk3399: no K loop with whole {v.mr}x{v.nr} MAC steps in {v.symbol}")
        cycles, rthroughput = mca(body, mcpu, a.llvm_mca)
        exits = sum(1 for _, mn, _ in body[:-1] if BRANCHES.match(mn))
        kernels[(v.precision, v.cluster)] = (v, body, macs, cycles, rthroughput, exits)
        print(f"model-rk3399: {v.precision} {v.cluster} ({mcpu}): {len(body)} instructions, "
              f"{macs} MACs, {cycles:.2f} cycles per iteration", file=sys.stderr)

    out = []
    say = out.append
    say("# RK3399 latency: static cycle model of the GEMM kernels")
    say("")
    say(f"**A model, not a measurement.** eq-bench commit {a.commit}. Measured numbers come from")
    say("`scripts/deploy-rk3399.sh` on a board (`bench-results/rk3399-<date>.md`).")
    say("")
    say("Method: each shipped micro-kernel's K loop is taken from the cross-built static aarch64")
    say("`eq-bench` (`objdump -d`; the innermost backward-branch loop of the kernel's symbol);")
    say("its MACs per iteration are counted from the multiply instructions (smull/smlal: 8,")
    say("fmla .4s: 4) and `llvm-mca` (LLVM's scheduling model of the core) gives cycles per")
    say("iteration. A model's cycles = the sum over its Convolution layers (shapes from")
    say("`eq-bench --gemm-shapes`) of tiles (M/mr x N/nr, rounded up) x K iterations (K rounded")
    say("up to the kernel's step) x cycles per iteration, at the cluster clock (A53 1.5 GHz,")
    say("A72 1.8 GHz, targets/rk3399.toml). #N columns assume perfect scaling over N cores.")
    say("")
    say("Limits: no cache or memory stalls (every load hits L1), no packing, im2col, requantization")
    say("or epilogue, no depthwise convolutions, fully connected or other layers, no threading")
    say("overhead; llvm-mca's Cortex-A72 model is LLVM's A57-derived one. The times are a lower")
    say("bound on the Convolution GEMM time only, useful for comparing kernels (INT7 vs INT8).")
    say("Where the compiler kept a loop inside a kernel's K loop (\"exits\" > 0: branches leaving")
    say("the modeled loop, taken as not taken), the code outside the innermost loop is not")
    say("counted: for INT7 on the A72 the modeled loop is one K step, and the widening of the")
    say("int16 sums after every four steps (16 `sadalp`) is left out.")
    say("")
    say("Seed columns: the seed paper's RK3399 numbers (TRT-INT8 vs EQ-INT7) are not in the")
    say("project's docs (/work/shared/docs), so they are marked n/a.")
    say("")
    say("## Kernels")
    say("")
    say("| kernel | core | loop | instructions | exits | MACs / iteration | cycles / iteration | "
        "MACs / cycle | Block RThroughput |")
    say("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for (prec, cluster), (v, body, macs, cycles, rt, exits) in kernels.items():
        say(f"| {prec} `{v.symbol.rsplit('::', 2)[-2]}::{v.symbol.rsplit('::', 1)[-1]}` "
            f"| {CLUSTERS[cluster][0]} | {body[0][0]:#x}-{body[-1][0]:#x} | {len(body)} | {exits} "
            f"| {macs} | {cycles:.2f} | {macs / cycles:.1f} | {rt:.2f} |")
    for cluster, (mcpu, mhz, threads) in CLUSTERS.items():
        say("")
        say(f"## {cluster} cluster ({mcpu}, {mhz} MHz), modeled ms")
        say("")
        header = "| Models | GEMM MMACs | TRT-INT8(#1) seed | EQ-INT7(#1) seed |"
        rule = "|---|---:|---:|---:|"
        for t in threads:
            header += f" FP32(#{t}) | EQ-INT8(#{t}) | EQ-INT7(#{t}) |"
            rule += "---:|---:|---:|"
        header += " INT7 / INT8 |"
        rule += "---:|"
        say(header)
        say(rule)
        for name, shapes in models.items():
            mmacs = sum(m * n * k for _, m, n, k in shapes) / 1e6
            ms = {}
            for prec in ("fp32", "int8", "int7"):
                v, _, macs, cycles, _, _ = kernels[(prec, cluster)]
                ms[prec] = gemm_cycles(shapes, v, cycles, macs) / (mhz * 1e3)
            row = f"| {name} | {mmacs:.0f} | n/a | n/a |"
            for t in threads:
                row += "".join(f" {ms[p] / t:.1f} |" for p in ("fp32", "int8", "int7"))
            row += f" {ms['int7'] / ms['int8']:.2f} |"
            say(row)
    with open(a.out, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"model-rk3399: wrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
