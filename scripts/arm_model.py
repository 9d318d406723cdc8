#!/usr/bin/env python3
"""Reads armcycles count results (count.sh --out directories) for scripts/bench-arm-model.sh.

    arm_model.py valid DIR SPEC            exit 0 when DIR holds a usable result for SPEC
    arm_model.py quick --ours DIR ...      one run: modeled ms per core, top blocks, ratio
    arm_model.py report --work DIR ...     bench-results/arm-model.md

SPEC is a count.sh CPU spec, QCPU[:MCA+MCA...], e.g. cortex-a53:cortex-a53+cortex-a55.
A result directory holds QCPU.json per qemu CPU as written by armcycles' estimate.py:
{"instructions", "cpus": {MCA: {"cycles", "ms", ...}}, "top": [{"share", "where", ...}]}.
The top blocks' shares are of the first llvm-mca model of that qemu run (the A53 model for
the cortex-a53 run). Work directory layout (bench-arm-model.sh writes it):

    WORK/ours/MODEL/PRECISION/QCPU.json          PRECISION fp32, int8, int7
    WORK/ncnn-VERSION/ncnn-NAME/QCPU.json        NAME = MODEL (fp32) or MODEL_int8

Standard library only.
"""

import argparse
import json
import os
import re
import sys

# (qemu -cpu, llvm-mca model, column title, seed-table core)
CORES = [
    ("cortex-a53", "cortex-a53", "A53 (LLVM A53 model)", "a53"),
    ("cortex-a53", "cortex-a55", "A53 (LLVM A55 model)", "a53"),
    ("cortex-a72", "cortex-a72", "A72", "a72"),
]
OURS = ["fp32", "int8", "int7"]
# (name, limit, numerator, denominator) of the speed targets
TARGETS = [
    ("INT7 ≤ 0.75× ncnn int8", 0.75, "int7", "ncnn-int8"),
    ("INT8 ≤ 1.0× ncnn int8", 1.0, "int8", "ncnn-int8"),
    ("FP32 ≤ 1.0× ncnn fp32", 1.0, "fp32", "ncnn-fp32"),
    ("INT7 ≤ 0.8× our INT8", 0.8, "int7", "int8"),
]
SEED_NAMES = {"SqueezeNetV1.1": "squeezenet", "MobileNetV1": "mobilenet", "VGG16": "vgg16",
              "ResNet50": "resnet50"}
DASH = "—"


def parse_spec(spec):
    """'cortex-a53:cortex-a53+cortex-a55' -> ('cortex-a53', ['cortex-a53', 'cortex-a55'])"""
    q, _, m = spec.partition(":")
    return q, (m.split("+") if m else [q])


def load(d, qcpu):
    """QCPU.json of result directory d, or None when missing or unreadable."""
    if not d:
        return None
    try:
        with open(os.path.join(d, f"{qcpu}.json")) as f:
            r = json.load(f)
    except (OSError, ValueError):
        return None
    return r if isinstance(r, dict) and isinstance(r.get("cpus"), dict) else None


def ms_of(d, qcpu, mca):
    r = load(d, qcpu)
    c = r["cpus"].get(mca) if r else None
    return c["ms"] if c and c.get("ms", 0) > 0 else None


def short_symbol(where):
    """Drops C++ parameter lists ('f(ncnn::Mat&, int)+0x40' -> 'f+0x40')."""
    if not where:
        return "?"
    m = re.match(r"^(.*?)(\+0x[0-9a-f]+)?$", where)
    name, off = m.group(1), m.group(2) or ""
    depth, out = 0, []
    for ch in name:
        if ch == "(":
            if depth == 0 and out and out[-1] not in "<{ ":
                break  # a parameter list: C++ names end here (Rust names have none)
        if ch in "<":
            depth += 1
        elif ch in ">" and depth > 0:
            depth -= 1
        out.append(ch)
    return "".join(out).strip() + off


def function_of(where):
    return re.sub(r"\+0x[0-9a-f]+$", "", short_symbol(where))


def top_blocks(d, qcpu, n):
    r = load(d, qcpu)
    return [(t["share"], short_symbol(t.get("where"))) for t in (r or {}).get("top", [])[:n]]


def top_functions(d, qcpu, n):
    """Shares summed per function over every top block the JSON lists."""
    r = load(d, qcpu)
    acc = {}
    for t in (r or {}).get("top", []):
        f = function_of(t.get("where"))
        acc[f] = acc.get(f, 0.0) + t["share"]
    listed = len((r or {}).get("top", []))
    return sorted(acc.items(), key=lambda kv: -kv[1])[:n], listed


def fmt_ms(v):
    return f"{v:,.1f}" if v is not None else DASH


def ratio(a, b):
    return a / b if a is not None and b is not None and b > 0 else None


def fmt_ratio(v):
    return f"{v:.2f}" if v is not None else DASH


def pct(v):
    return f"{100 * v:.1f}%"


# ---------------------------------------------------------------- valid


def cmd_valid(a):
    q, mcas = parse_spec(a.spec)
    r = load(a.dir, q)
    ok = bool(r) and r.get("instructions", 0) > 0 and all(
        r["cpus"].get(m, {}).get("ms", 0) > 0 for m in mcas)
    sys.exit(0 if ok else 1)


# ---------------------------------------------------------------- quick


def cmd_quick(a):
    specs = [parse_spec(s) for s in a.cpus.split(",") if s]
    lines = [f"ours {a.model} {a.precision}: {a.what}" if a.ours else
             f"ncnn {a.model} {a.precision}: {a.what}"]
    res_dir = a.ours or a.ncnn
    ref_dir, ref_name, limit = None, None, None
    if a.ours:
        if a.precision == "fp32":
            ref_dir, ref_name, limit = a.ncnn, "ncnn fp32", 1.0
        else:
            ref_dir, ref_name = a.ncnn, "ncnn int8"
            limit = 0.75 if a.precision == "int7" else 1.0
    bad = False
    for q, mcas in specs:
        for m in mcas:
            title = next((t for qq, mm, t, _ in CORES if qq == q and mm == m), f"{q}/{m}")
            v = ms_of(res_dir, q, m)
            if v is None:
                bad = True
                lines.append(f"  {title:<22} no result in {res_dir}")
                continue
            line = f"  {title:<22} {v:10.2f} ms"
            if a.ours:
                ref = ms_of(ref_dir, q, m)
                if ref is not None:
                    rr = v / ref
                    verdict = "met" if rr <= limit else "missed"
                    line += (f"   {ref_name} {ref:.2f} ms (cached): ratio {rr:.2f}, "
                             f"target ≤ {limit:.2f}×: {verdict}")
                else:
                    line += f"   ({ref_name}: {a.no_ref or 'not cached'})"
            lines.append(line)
        r = load(res_dir, q)
        if r:
            lines.append(f"  {q} run: {r['instructions'] / 1e6:,.1f} M instructions; "
                         f"top blocks by {mcas[0]} cycles:")
            for share, sym in top_blocks(res_dir, q, a.top):
                lines.append(f"    {pct(share):>6}  {sym}")
            funcs, listed = top_functions(res_dir, q, 5)
            lines.append(f"    by function (over the {listed} hottest blocks): " +
                         "; ".join(f"{f} {pct(s)}" for f, s in funcs))
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(f"# Quick armcycles run: {a.model} {a.precision}\n\n"
                    "Modeled cycles (qemu block counts timed with llvm-mca; no caches, "
                    "no branch prediction), not a measurement.\n\n```\n" + text + "```\n")
    sys.exit(1 if bad else 0)


# ---------------------------------------------------------------- report


def seed_ratios(path):
    """{(model, 'a53'|'a72'): (eq_int7_ms, trt_int8_ms)} from docs/seed-tables.md."""
    out = {}
    core, cols = None, None
    try:
        text = open(path).read().splitlines()
    except OSError:
        return out
    for line in text:
        if line.startswith("Cortex-A53"):
            core, cols = "a53", None
        elif line.startswith("Cortex-A72"):
            core, cols = "a72", None
        elif line.startswith("## "):
            core, cols = None, None
        elif core and line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cells[0] == "Models":
                cols = cells
            elif cols and "TRT-INT8(#1)" in cols and "EQ-INT7(#1)" in cols:
                name = SEED_NAMES.get(cells[0], cells[0].lower())
                try:
                    trt = float(cells[cols.index("TRT-INT8(#1)")])
                    eq = float(cells[cols.index("EQ-INT7(#1)")])
                except (ValueError, IndexError):
                    continue
                out[(name, core)] = (eq, trt)
    return out


def cmd_report(a):
    models = [m for m in a.models.split(",") if m]
    synthetic = set(filter(None, a.synthetic.split(",")))
    no_int8 = set(filter(None, a.no_ncnn_int8.split(",")))
    ncnn_root = os.path.join(a.work, f"ncnn-{a.ncnn_version}")

    def run_dir(model, kind):
        if kind == "ncnn-fp32":
            return os.path.join(ncnn_root, f"ncnn-{model}")
        if kind == "ncnn-int8":
            return None if model in no_int8 else os.path.join(ncnn_root, f"ncnn-{model}_int8")
        return os.path.join(a.work, "ours", model, kind)

    seed = seed_ratios(a.seed)
    meta = json.load(open(a.meta))
    llvm = next((load(run_dir(m, k), q)["llvm_mca"] for m in models
                 for k in ["ncnn-fp32"] + OURS for q, _, _, _ in CORES
                 if load(run_dir(m, k), q)), "?")

    o = []
    o.append("# ncnn vs this runtime on modeled Cortex-A53 / Cortex-A72 cores "
             "(one inference, 1 thread)\n")
    o.append(
        "**Modeled cycles, not a measurement.** Written by `scripts/bench-arm-model.sh` with "
        "the armcycles tool (`$EQ_SHARED/tools/armcycles`, see its README): each program "
        "runs statically linked under `qemu-aarch64 -cpu cortex-a53` or `-cpu cortex-a72` "
        "(so ncnn and this runtime pick the kernels they pick on that core), a qemu plugin "
        "counts every executed block exactly, and llvm-mca times each hot block on LLVM's "
        f"model of the core (LLVM {llvm}); ms = estimated cycles at 1.5 GHz (A53) or "
        "1.8 GHz (A72). What that leaves out, per the README's limits: **no memory system** "
        "(every load hits L1: no cache or TLB misses, no DRAM bandwidth, no prefetching), "
        "no branch prediction and no front end, and blocks are timed as if repeated back to "
        "back. The estimates therefore undershoot a real RK3399, most for the big layers "
        "(VGG16, ResNet-50) and on the in-order A53. LLVM's A53 model serialises write-back "
        "in order and charges ncnn's hand-scheduled A53 fp32 kernels several times their "
        "real cost, so the A53 run is also timed with LLVM's A55 model; which of the two "
        "is closer on a real A53 is unchecked: quote both, and distrust A53-model fp32 "
        "ratios. The A72 is LLVM's Cortex-A57-family model; divide-heavy blocks are the "
        "least certain. Compare ratios between engines on the same core, not these ms "
        "with measured ones.\n")
    o.append(
        "One steady-state inference = (run with `--loops 3 --warmup 0`) − (run with "
        "`--loops 1 --warmup 0`), × 0.5, block by block (`count.sh --base-args ... "
        "--scale 0.5`): loading, weight packing, the first inference and process start-up "
        "cancel out. 1 thread, all-zero weights and a constant input (as benchncnn), "
        "models from `$EQ_SHARED/models/ncnn-benchmark`.\n")
    o.append(f"- this runtime: commit `{meta['commit']}`, `eq-bench` built with "
             "`cargo build --release -p eq-bench --bin eq-bench --target "
             "aarch64-unknown-linux-gnu` (static)")
    o.append(f"- ncnn: {meta['ncnn_version']} (PyPI sdist built for aarch64 by armcycles' "
             "`ncnn-bench.sh`: static, no OpenMP, ARMv8.2+ kernels off; its `ncnn-driver` "
             "is benchncnn for one model)")
    o.append(f"- date: {meta['date']}; qemu: {meta['qemu']}; llvm-mca: {llvm}")
    o.append("- INT8 / INT7 (ours): `MODEL_int8.param` with `--precision int8` / "
             "`--precision int7`. ncnn int8: `MODEL_int8.param`.")
    if synthetic:
        names = ", ".join(sorted(synthetic))
        o.append(f"- ‡ {names}: ncnn-benchmark has no `_int8.param`, so there is no ncnn "
                 "int8 number; our INT8 / INT7 run the fp32 param with `--precision int8` / "
                 "`int7`, which eq-bench quantizes with synthetic scales (same layers and "
                 "kernels as a real quantized model)")
    notes = os.path.join(os.path.dirname(os.path.abspath(a.out)), "arm-model-notes.md")
    if os.path.exists(notes):
        o.append("- what limits the numbers, the targets not met and the work split over the "
                 "RK3399's clusters: [arm-model-notes.md](arm-model-notes.md)")
    o.append("")

    o.append("## Modeled ms per inference and ratios\n")
    o.append("The targets are judged on the A53 run timed by LLVM's A55 model and on the A72 "
             "run; the A53-model table marks them for reference only (see above).\n")
    tnames = " · ".join(t[0] for t in TARGETS)
    for q, m, title, sc in CORES:
        o.append(f"### {title}, `qemu -cpu {q}`, llvm-mca `-mcpu={m}`\n")
        o.append("| Model | ncnn fp32 | ncnn int8 | our FP32 | our INT8 | our INT7 | "
                 "INT8 ÷ ncnn int8 | INT7 ÷ ncnn int8 | FP32 ÷ ncnn fp32 | INT7 ÷ our INT8 | "
                 f"targets ({tnames}) | paper EQ-INT7 ÷ TRT-INT8 (#1, measured) |")
        o.append("|---|" + "---:|" * 9 + "---|---:|")
        for model in models:
            v = {k: ms_of(run_dir(model, k), q, m) for k in ["ncnn-fp32", "ncnn-int8"] + OURS}
            ratios = [ratio(v["int8"], v["ncnn-int8"]), ratio(v["int7"], v["ncnn-int8"]),
                      ratio(v["fp32"], v["ncnn-fp32"]), ratio(v["int7"], v["int8"])]
            marks = []
            for _, limit, num, den in TARGETS:
                rr = ratio(v[num], v[den])
                marks.append(DASH if rr is None else ("met" if rr <= limit else "missed"))
            p = seed.get((model, sc))
            paper = f"{p[0] / p[1]:.2f} ({p[0]:g}/{p[1]:g} ms)" if p else DASH
            name = model + (" ‡" if model in synthetic else "")
            cells = [fmt_ms(v[k]) for k in ["ncnn-fp32", "ncnn-int8"] + OURS]
            cells += [fmt_ratio(r) for r in ratios]
            o.append(f"| {name} | " + " | ".join(cells) + f" | {' · '.join(marks)} | {paper} |")
        o.append("")

    o.append("## Executed instructions (millions per inference; exact)\n")
    kinds = [("ncnn-fp32", "ncnn fp32"), ("ncnn-int8", "ncnn int8"), ("fp32", "our FP32"),
             ("int8", "our INT8"), ("int7", "our INT7")]
    o.append("| Model | qemu -cpu | " + " | ".join(t for _, t in kinds) + " |")
    o.append("|---|---|" + "---:|" * len(kinds))
    for model in models:
        for q in ("cortex-a53", "cortex-a72"):
            cells = []
            for k, _ in kinds:
                r = load(run_dir(model, k), q)
                cells.append(f"{r['instructions'] / 1e6:,.1f}" if r else DASH)
            o.append(f"| {model} | {q} | " + " | ".join(cells) + " |")
    o.append("")

    o.append("## Hottest blocks\n")
    o.append(f"Per run, the {a.top} blocks with the most modeled cycles and their share of the "
             "inference: the `cortex-a53` run ranked and shared by LLVM's A53 model, the "
             "`cortex-a72` run by the A72 model. Symbol = function (C++ parameter lists "
             "dropped) + offset of the block. \"By function\" sums the listed hot blocks "
             "(count.sh `--top`) per function, so it is a lower bound on each function's "
             "share.\n")
    for model in models:
        o.append(f"### {model}\n")
        for k, t in kinds:
            d = run_dir(model, k)
            if d is None or not any(load(d, q) for q in ("cortex-a53", "cortex-a72")):
                continue
            o.append(f"{t}:\n")
            o.append("| # | A53 run share | A53 run block | A72 run share | A72 run block |")
            o.append("|---:|---:|---|---:|---|")
            ta = top_blocks(d, "cortex-a53", a.top)
            tb = top_blocks(d, "cortex-a72", a.top)
            for i in range(max(len(ta), len(tb))):
                ca = [pct(ta[i][0]), f"`{ta[i][1]}`"] if i < len(ta) else ["", ""]
                cb = [pct(tb[i][0]), f"`{tb[i][1]}`"] if i < len(tb) else ["", ""]
                o.append(f"| {i + 1} | " + " | ".join(ca + cb) + " |")
            o.append("")
            for q in ("cortex-a53", "cortex-a72"):
                funcs, listed = top_functions(d, q, 4)
                if funcs:
                    o.append(f"- by function, {q} run (top {listed} blocks): " +
                             "; ".join(f"`{f}` {pct(s)}" for f, s in funcs))
            o.append("")

    o.append("## Commands\n")
    o.append("```")
    o.append(open(a.commands).read().rstrip("\n"))
    o.append("```")
    text = "\n".join(o) + "\n"
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("valid")
    v.add_argument("dir")
    v.add_argument("spec")
    q = sub.add_parser("quick")
    q.add_argument("--ours", help="result dir of our run")
    q.add_argument("--ncnn", help="ncnn result dir (the reference for --ours, else the run)")
    q.add_argument("--no-ref", default="", help="why there is no reference")
    q.add_argument("--model", required=True)
    q.add_argument("--precision", required=True)
    q.add_argument("--what", default="")
    q.add_argument("--cpus", required=True, help="count.sh CPU specs, comma-separated")
    q.add_argument("--top", type=int, default=8)
    q.add_argument("--out")
    r = sub.add_parser("report")
    r.add_argument("--work", required=True)
    r.add_argument("--models", required=True)
    r.add_argument("--ncnn-version", required=True)
    r.add_argument("--synthetic", default="", help="models whose INT8/INT7 use synthetic scales")
    r.add_argument("--no-ncnn-int8", default="", help="models without an ncnn int8 param")
    r.add_argument("--seed", required=True, help="docs/seed-tables.md")
    r.add_argument("--meta", required=True, help="JSON: commit, ncnn_version, date, qemu")
    r.add_argument("--commands", required=True)
    r.add_argument("--top", type=int, default=8)
    r.add_argument("--out", required=True)
    a = ap.parse_args()
    {"valid": cmd_valid, "quick": cmd_quick, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    main()
