#!/usr/bin/env python3
"""Runs eq-bench and ncnn (PyPI package, see ncnn_bench.py) side by side on the benchncnn
models and writes a markdown table with the ratios against the project's targets.
Called by scripts/bench-vs-ncnn.sh, which builds eq-bench first.

usage: bench_vs_ncnn.py --eq-bench PATH --models DIR --out FILE [--loops N] [--warmup N]
                        [--threads 1,2] [--fp32 a,b] [--int8 a_int8,b_int8] [--command TEXT]
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ncnn  # noqa: E402
import ncnn_bench  # noqa: E402

# Targets: our latency / ncnn latency (lower is better), and the 2-thread speedup.
FP32_TARGET = 1.0
INT8_TARGET = 1.0
INT7_TARGET = 1.0  # against ncnn int8 (and no slower than our int8: compare the columns)
SPEEDUP_TARGET = 1.7


def eq_run(exe, param, precisions, threads, loops, warmup, extra=()):
    """eq-bench records keyed by (precision, threads), plus skip reasons from its output
    (and its `kernels:` line under the key "kernels")."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "r.json")
        cmd = [exe, "--model", param, "--precision", ",".join(precisions),
               "--threads", ",".join(map(str, threads)), "--loops", str(loops),
               "--warmup", str(warmup), "--json", out, *extra]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise SystemExit(f"eq-bench failed: {' '.join(cmd)}\n{p.stderr}")
        sys.stdout.write(p.stdout)
        with open(out) as f:
            records = json.load(f)
    got = {(r["precision"], r["threads"]): r for r in records}
    skipped = {}
    for line in p.stdout.splitlines():
        if line.startswith("kernels:"):
            got["kernels"] = line.split(":", 1)[1].strip()
        if "skipped:" in line:
            words = line.split()
            skipped[(words[1], int(words[4]))] = line.split("skipped:", 1)[1].strip()
    return got, skipped


def ncnn_run(param, threads, loops, warmup, fp16_storage=True):
    out = {}
    for t in threads:
        mn, med, avg = ncnn_bench.bench(param, t, loops, warmup, fp16_storage)
        name = ncnn_bench.model_name(param) + ("" if fp16_storage else " (no fp16)")
        print(f"{'ncnn ' + name:>20}  threads = {t:<2}  min = {mn:8.2f}  median = {med:8.2f}  "
              f"avg = {avg:8.2f}", flush=True)
        out[t] = dict(min_ms=mn, median_ms=med, avg_ms=avg)
    return out


def fmt_ms(r):
    return f"{r['median_ms']:.2f} ({r['min_ms']:.2f})"


def ratios(ours, theirs):
    """Ratio of medians (what the targets are judged on) and of minimums (less sensitive to
    other jobs on a shared machine)."""
    med = ours["median_ms"] / theirs["median_ms"]
    return med, f"{med:.2f} / {ours['min_ms'] / theirs['min_ms']:.2f}"


def verdict(ratio, target):
    return "met" if ratio <= target else "missed"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags():
    """The /proc/cpuinfo flags that decide either engine's x86 code paths."""
    wanted = ["avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
              "avx_vnni", "avx512_bf16", "avx512_fp16"]
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return " ".join(w for w in wanted if w in have) or "none of " + " ".join(wanted)
    except OSError:
        pass
    return "unknown"


def load_avg():
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "unknown"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--eq-bench", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--loops", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--fp32", default="squeezenet,mobilenet,resnet50,vgg16")
    ap.add_argument("--int8", default="squeezenet_int8,mobilenet_int8,resnet50_int8,vgg16_int8")
    ap.add_argument("--command", default=" ".join(sys.argv))
    ap.add_argument("--ncnn-build", default="PyPI wheel")
    a = ap.parse_args()
    threads = [int(t) for t in a.threads.split(",")]
    load_before = load_avg()
    started = datetime.datetime.now(datetime.timezone.utc)

    def param(name):
        return os.path.join(a.models, name + ".param")

    # Interleave per model (ours, then ncnn) so both see similar machine load.
    fp32 = {}
    kernels = None
    for m in filter(None, a.fp32.split(",")):
        ours, _ = eq_run(a.eq_bench, param(m), ["fp32"], threads, a.loops, a.warmup)
        kernels = kernels or ours.get("kernels")
        half, _ = eq_run(a.eq_bench, param(m), ["fp32"], threads, a.loops, a.warmup,
                         ["--fp16-weights"])
        fp32[m] = (ours, ncnn_run(param(m), threads, a.loops, a.warmup),
                   ncnn_run(param(m), threads, a.loops, a.warmup, fp16_storage=False), half)
    int8 = {}
    for m in filter(None, a.int8.split(",")):
        ours, skipped = eq_run(a.eq_bench, param(m), ["int8", "int7"], threads, a.loops,
                               a.warmup)
        kernels = kernels or ours.get("kernels")
        int8[m] = (ours, skipped, ncnn_run(param(m), threads, a.loops, a.warmup))

    L = []
    L.append("# eq-runtime vs ncnn on the x86_64 host\n")
    L.append(f"- Date: {started:%Y-%m-%d %H:%M} UTC")
    L.append(f"- Command: `{a.command}`")
    L.append(f"- CPU: {cpu_model()}, {os.cpu_count()} logical CPUs; flags: {cpu_flags()}")
    L.append(f"- Load average before / after: {load_before} / {load_avg()} "
             "(the machine is shared with other jobs; see the notes)")
    L.append(f"- ncnn {ncnn.__version__} ({a.ncnn_build}), in-process: zero weights "
             "(DataReaderFromEmpty), input filled with 0.01, new extractor per run, default "
             "Option: packing layout, sgemm + Winograd convolution, lightmode, int8 inference "
             "for *_int8; it picks its x86 code paths at run time from the same CPU flags "
             "(among those built in). "
             "fp16 storage is on by default: on a CPU with F16C ncnn's InnerProduct keeps its "
             "weights in fp16 (half the memory traffic, not an fp32 result), so the FP32 table "
             "also shows ncnn with `use_fp16_storage` (and packed / arithmetic) off; the target "
             "is judged against the default")
    L.append("- eq-bench (release build): zero weights, input 0.01, unpinned (single-cluster "
             f"host), same loops / warm-up; {kernels or 'kernels: not reported'}")
    L.append(f"- {a.loops} timed runs after {a.warmup} warm-up runs; cells are "
             "median ms (min ms); ratio = ours / ncnn as medians / minimums (lower is better; targets are "
             "judged on the medians)\n")

    L.append("## FP32 (target: ratio <= 1.0)\n")
    L.append("Two like-for-like pairs besides the headline ratio (exact eq fp32 against ncnn's "
             "default, which stores InnerProduct weights in fp16): eq with `--fp16-weights` "
             "(the same fp16 InnerProduct storage) against ncnn's default, and exact eq fp32 "
             "against ncnn with fp16 storage off. \"target\" is the headline ratio; \"same "
             "storage\" holds when both like-for-like ratios are <= 1.0.\n")
    L.append("| model | threads | ncnn fp32 | eq fp32 | ratio med / min | target | "
             "eq fp32, fp16 weights | ratio med / min | ncnn fp32, no fp16 storage | "
             "eq fp32 ratio med / min | same storage |")
    L.append("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|")
    for m, (ours, theirs, pure, half) in fp32.items():
        for t in threads:
            o, n, p, h = ours.get(("fp32", t)), theirs[t], pure[t], half.get(("fp32", t))
            if o is None or h is None:
                L.append(f"| {m} | {t} | {fmt_ms(n)} | n/a | n/a | missed | n/a | n/a | "
                         f"{fmt_ms(p)} | n/a | missed |")
                continue
            r, text = ratios(o, n)
            r_half, text_half = ratios(h, n)
            r_pure, text_pure = ratios(o, p)
            same = verdict(max(r_half, r_pure), FP32_TARGET)
            L.append(f"| {m} | {t} | {fmt_ms(n)} | {fmt_ms(o)} | {text} | "
                     f"{verdict(r, FP32_TARGET)} | {fmt_ms(h)} | {text_half} | {fmt_ms(p)} | "
                     f"{text_pure} | {same} |")

    kernel = os.environ.get("EQ_X86_KERNEL", "")
    L.append("\n## INT8 / INT7 (targets: int8 and int7 ratio <= 1.0 against ncnn int8, int7 "
             "no slower than our int8; eq's integer GEMM path: "
             f"{'EQ_X86_KERNEL=' + kernel if kernel else 'the best this CPU has'})\n")
    L.append("| model | threads | ncnn int8 | eq int8 | ratio med / min | eq int7 | "
             "ratio med / min |")
    L.append("|---|---:|---:|---:|---:|---:|---:|")
    reasons = set()
    for m, (ours, skipped, theirs) in int8.items():
        for t in threads:
            n = theirs[t]
            cells = []
            for prec, target in (("int8", INT8_TARGET), ("int7", INT7_TARGET)):
                o = ours.get((prec, t))
                if o is None:
                    reasons.add(skipped.get((prec, t), "not run"))
                    cells += ["n/a", "n/a"]
                else:
                    r, text = ratios(o, n)
                    cells += [fmt_ms(o), f"{text} ({verdict(r, target)})"]
            L.append(f"| {m} | {t} | {fmt_ms(n)} | " + " | ".join(cells) + " |")
    if reasons:
        L.append("\nn/a: eq-bench skipped these runs: " + "; ".join(sorted(reasons)))

    if "resnet50" in fp32 and 1 in threads and 2 in threads:
        ours, theirs, _, _ = fp32["resnet50"]
        L.append(f"\n## resnet50 FP32 2-thread speedup (target: >= {SPEEDUP_TARGET})\n")
        L.append("| engine | 1 thread | 2 threads | speedup med / min |")
        L.append("|---|---:|---:|---:|")
        for name, one, two in (("eq", ours.get(("fp32", 1)), ours.get(("fp32", 2))),
                               ("ncnn", theirs[1], theirs[2])):
            if one and two:
                s = one["median_ms"] / two["median_ms"]
                s_min = one["min_ms"] / two["min_ms"]
                mark = f" ({verdict(-s, -SPEEDUP_TARGET)})" if name == "eq" else ""
                L.append(f"| {name} | {fmt_ms(one)} | {fmt_ms(two)} | {s:.2f} / {s_min:.2f}"
                         f"{mark} |")

    text = "\n".join(L) + "\n"
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    # Keep hand-written notes below the marker when the table is regenerated.
    marker = "<!-- notes -->"
    if os.path.exists(a.out):
        old = open(a.out).read()
        if marker in old:
            text += "\n" + marker + old.split(marker, 1)[1]
    with open(a.out, "w") as f:
        f.write(text)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
