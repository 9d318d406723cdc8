#!/usr/bin/env python3
"""Generates `asm_loops.rs`: the software-pipelined NEON loops of the unpadded 3x3 depthwise
path (`mod.rs` describes the data they walk), per core (Cortex-A53, A72), precision (INT8,
INT7) and stride (1, 2), for int8 output with the clamp epilogue.

Each loop iteration convolves block i (16 outputs of one row) and requantizes and stores
block i - 1, so the epilogue's dependency chains overlap the next block's multiplies; the
next block's pointers are computed from its descriptor during the iteration before. One
iteration is written below as instruction streams over virtual NEON registers (`streams`).

Scheduling is done against the cycle models the project measures with (armcycles: llvm-mca
14 on LLVM's Cortex-A53, A55 and A57/A72 models):
* Cortex-A53 loops: a replica of llvm-mca's in-order issue stage (`simulate`, with the
  per-form timings of `TIMING` read from llvm-mca; it reproduces llvm-mca's cycle counts on
  these loops exactly) times thousands of orders a second, and simulated annealing
  (`anneal`) minimises the A55 model's cycles plus 0.3 x the A53 model's. Both models are
  in order with in-order write-back; the A55 model's 128-bit NEON ops start an issue group
  and pair only with loads of latency >= 4, stores and FP multiply-accumulates.
* Cortex-A72 loops (out of order): a list schedule plus a short llvm-mca guided search.
A linear-scan allocator (`allocate`) assigns v0..v31 to the chosen order.

    python3 gen_asm.py [--rounds N] [--seed S] [--jobs J] > asm_loops.rs

The output is committed; run this only to change the loops (needs llvm-mca 14; about 6
minutes on 2 cores). It prints each loop's llvm-mca cycles per block next to the replica's.
"""

import argparse
import math
import os
import random
import re
import subprocess
import sys
import tempfile

# ---------------------------------------------------------------------------------------
# Instructions: NEON operands are %0, %1, .. (virtual registers, in `regs`); GPR operands are
# Rust asm placeholders {name} / {name:w}; literal braces are doubled as Rust asm wants.


class V:
    """A virtual NEON register: a variable that instructions may update in place."""

    def __init__(self, name, pinned=None):
        self.name = name
        self.pinned = pinned

    def __repr__(self):
        return self.name


class I:
    def __init__(self, fmt, regs=(), defs=(), uses=(), kind="vq", gdefs=(), guses=(), pair=None):
        self.fmt = fmt
        self.regs = list(regs)
        self.defs = list(defs)
        self.uses = list(uses)
        self.kind = kind
        self.gdefs = list(gdefs)
        self.guses = list(guses)
        self.pair = pair  # ld2: its two destinations need consecutive registers

    def text(self, phys):
        t = self.fmt
        for i in reversed(range(len(self.regs))):
            t = t.replace(f"%q{i}", f"q{phys[self.regs[i]]}")
            t = t.replace(f"%{i}", f"v{phys[self.regs[i]]}")
        return t

    def __repr__(self):
        return self.fmt


def vop(fmt, d, *srcs, kind="vq", acc=False):
    """NEON op writing `d` (%0) from `srcs` (%1..), also reading `d` when `acc`."""
    return I(fmt, [d] + list(srcs), [d], list(srcs) + ([d] if acc else []), kind)


def gop(fmt, defs=(), uses=(), kind="alu"):
    return I(fmt, kind=kind, gdefs=defs, guses=uses)


# ---------------------------------------------------------------------------------------
# One iteration: the epilogue of the pending block, then the conv of the current one.

PINNED = {"E0": 16, "E1": 17, "E2": 18, "E3": 19, "C": 28, "QLO": 30, "QHI": 31}


def streams(prec, stride, split7=False, bias="dup", loads="ld1", tloads=None):
    """(epilogue, conv, tail-of-iteration) instruction lists and the pinned variables.

    `loads`: "ld1" loads 16 bytes with `ld1` (which in-order cores pair with NEON
    arithmetic) from explicit addresses and the taps three vectors per `ld1`; "ldr" uses
    `ldr`/`ldur q` with immediate offsets (fewer instructions, for out-of-order cores)."""
    tloads = tloads or loads
    E = [V(f"E{i}", PINNED[f"E{i}"]) for i in range(4)]  # int32 sums, carried over
    C = V("C", PINNED["C"])  # [scale, bias, top, 0] of the pending block's channel
    QLO, QHI = V("QLO", PINNED["QLO"]), V("QHI", PINNED["QHI"])

    epi = []
    F = [V(f"F{i}") for i in range(4)]
    B = [V(f"B{i}") for i in range(4)]
    for i in range(4):
        epi.append(vop("scvtf %0.4s, %1.4s", F[i], E[i], kind="vf"))
    for i in range(4):
        if bias == "ld1r":
            epi.append(I("ld1r {{%0.4s}}, [{cb}]", [B[i]], [B[i]], [], "ld1r", guses=["cb"]))
        else:
            epi.append(vop("dup %0.4s, %1.s[1]", B[i], C, kind="vf"))
    for i in range(4):
        epi.append(vop("fmla %0.4s, %1.4s, %2.s[0]", B[i], F[i], C, kind="vf", acc=True))
    for i in range(4):
        epi.append(vop("fmul %0.4s, %1.4s, %2.s[2]", B[i], B[i], C, kind="vf"))
    for i in range(4):
        epi.append(vop("fcvtas %0.4s, %1.4s", B[i], B[i], kind="vf"))
    H0, H1, Q = V("H0"), V("H1"), V("Q")
    epi += [
        vop("sqxtn %0.4h, %1.4s", H0, B[0]),
        vop("sqxtn2 %0.8h, %1.4s", H0, B[1], acc=True),
        vop("sqxtn %0.4h, %1.4s", H1, B[2]),
        vop("sqxtn2 %0.8h, %1.4s", H1, B[3], acc=True),
        vop("sqxtn %0.8b, %1.8h", Q, H0),
        vop("sqxtn2 %0.16b, %1.8h", Q, H1, acc=True),
        vop("smax %0.16b, %1.16b, %2.16b", Q, Q, QLO),
        vop("smin %0.16b, %1.16b, %2.16b", Q, Q, QHI),
        I("str %q0, [{oprev}]", [Q], [], [Q], "st", guses=["oprev"]),
    ]

    conv = []
    # The pointers of this block (r0..r2: its three input rows, tp: its tap set) were
    # computed during the previous iteration; this one computes the next block's.
    rows = ["r0", "r1", "r2"]
    inp, tap = {}, {}
    nadr = [0]

    def address(base, off):
        """A register holding base + off (round robin over eight temporaries)."""
        if off == 0:
            return base
        a = f"a{nadr[0] % 8}"
        nadr[0] += 1
        conv.append(gop(f"add {{{a}}}, {{{base}}}, #{off}", [a], [base]))
        return a

    def load16(v, base, off, how):
        if how == "ld1":
            a = address(base, off)
            conv.append(I(f"ld1 {{{{%0.16b}}}}, [{{{a}}}]", [v], [v], [], "ld1", guses=[a]))
        else:
            op = f"ldur %q0, [{{{base}}}, #{off}]" if off % 16 else f"ldr %q0, [{{{base}}}, #{off}]"
            conv.append(I(op.replace(", #0]", "]"), [v], [v], [], "ldq", guses=[base]))

    for ky in range(3):
        if stride == 1:
            for kx in range(3):
                v = V(f"in{ky}{kx}")
                load16(v, rows[ky], kx, loads)
                inp[ky, kx] = v
        else:
            # Even bytes of [r] are kx 0, odd ones kx 1; even bytes of [r + 2] are kx 2.
            a, b, c, d = V(f"in{ky}0"), V(f"in{ky}1"), V(f"in{ky}2"), V(f"odd{ky}")
            conv.append(I(f"ld2 {{{{%0.16b, %1.16b}}}}, [{{{rows[ky]}}}]", [a, b], [a, b], [],
                          "ld2", guses=[rows[ky]], pair=(a, b)))
            q = address(rows[ky], 2)
            conv.append(I(f"ld2 {{{{%0.16b, %1.16b}}}}, [{{{q}}}]", [c, d], [c, d], [],
                          "ld2", guses=[q], pair=(c, d)))
            inp[ky, 0], inp[ky, 1], inp[ky, 2] = a, b, c
        for kx in range(3):
            t = V(f"t{ky}{kx}")
            load16(t, "tp", 16 * (3 * ky + kx), tloads)
            tap[ky, kx] = t

    if prec == 8:
        # Two products per int16 lane (2 · 127² = 32258 ≤ 32767): (0,1) (2,3) (4,5) (6,7), 8.
        groups = [[0, 1], [2, 3], [4, 5], [6, 7], [8]]
    elif split7:
        # Eight per lane (8 · 63² = 31752 ≤ 32767) as two chains of four, then tap 8.
        groups = [[0, 1, 2, 3], [4, 5, 6, 7], [8]]
    else:
        # Eight products per int16 lane (8 · 63² = 31752 ≤ 32767), then tap 8.
        groups = [[0, 1, 2, 3, 4, 5, 6, 7], [8]]
    parts = []
    for gi, g in enumerate(groups):
        lo, hi = V(f"p{gi}l"), V(f"p{gi}h")
        for n, j in enumerate(g):
            x, t = inp[divmod(j, 3)], tap[divmod(j, 3)]
            if n == 0:
                conv.append(vop("smull %0.8h, %1.8b, %2.8b", lo, x, t))
                conv.append(vop("smull2 %0.8h, %1.16b, %2.16b", hi, x, t))
            else:
                conv.append(vop("smlal %0.8h, %1.8b, %2.8b", lo, x, t, acc=True))
                conv.append(vop("smlal2 %0.8h, %1.16b, %2.16b", hi, x, t, acc=True))
        parts.append((lo, hi))

    def widen(d, a, b):
        return [
            vop("saddl %0.4s, %1.4h, %2.4h", d[0], a[0], b[0]),
            vop("saddl2 %0.4s, %1.8h, %2.8h", d[1], a[0], b[0]),
            vop("saddl %0.4s, %1.4h, %2.4h", d[2], a[1], b[1]),
            vop("saddl2 %0.4s, %1.8h, %2.8h", d[3], a[1], b[1]),
        ]

    if prec == 8:
        S = [V(f"S{i}") for i in range(4)]
        X = [V(f"X{i}") for i in range(4)]
        conv += widen(S, parts[0], parts[1])
        conv += widen(X, parts[2], parts[3])
        p8 = parts[4]
        conv += [
            vop("saddw %0.4s, %1.4s, %2.4h", S[0], S[0], p8[0]),
            vop("saddw2 %0.4s, %1.4s, %2.8h", S[1], S[1], p8[0]),
            vop("saddw %0.4s, %1.4s, %2.4h", S[2], S[2], p8[1]),
            vop("saddw2 %0.4s, %1.4s, %2.8h", S[3], S[3], p8[1]),
        ]
        conv += [vop("add %0.4s, %1.4s, %2.4s", E[i], S[i], X[i]) for i in range(4)]
    else:
        a = parts[0]
        if split7:
            b = parts[1]
            conv += [vop("add %0.8h, %1.8h, %2.8h", a[0], a[0], b[0]),
                     vop("add %0.8h, %1.8h, %2.8h", a[1], a[1], b[1])]
        conv += widen(E, a, parts[-1])
    # The next block's pointers, from its descriptor: in offset | out offset << 32, then
    # the offset of its tap set in the channel's tap table.
    conv.append(gop("ldp {da}, {db}, [{desc}]", ["da", "db"], ["desc"], "ldg"))
    conv.append(gop("add {desc}, {desc}, #16", ["desc"], ["desc"]))
    conv.append(gop("add {r0}, {inb}, {da:w}, sxtw", ["r0"], ["inb", "da"]))
    conv.append(gop("add {r1}, {r0}, {w}", ["r1"], ["r0", "w"]))
    conv.append(gop("add {r2}, {r1}, {w}", ["r2"], ["r1", "w"]))
    conv.append(gop("add {tp}, {tb}, {db}", ["tp"], ["tb", "db"]))
    # This block's channel constants replace the pending block's.
    if loads == "ld1":
        conv.append(I("ld1 {{%0.16b}}, [{cp}]", [C], [C], [], "ld1", guses=["cp"]))
    else:
        conv.append(I("ldr %q0, [{cp}]", [C], [C], [], "ldq", guses=["cp"]))
    # This block becomes the pending one; the next block's output address.
    last = [gop("mov {oprev}, {ocur}", ["oprev"], ["ocur"]),
            gop("add {ocur}, {ob}, {da}, asr #32", ["ocur"], ["ob", "da"]),
            gop("subs {cnt}, {cnt}, #1", ["cnt", "nzcv"], ["cnt"])]
    return epi, conv, last, [E[0], E[1], E[2], E[3], C, QLO, QHI]


# ---------------------------------------------------------------------------------------
# Dependencies, scheduling, register allocation

LAT = {"vq": 4, "vf": 4, "ldq": 3, "ld1": 5, "ld1x3": 7, "ld2": 7, "ld1r": 4, "ldg": 3,
       "alu": 3, "st": 1}
# Load-unit cycles per load (Cortex-A55 model)
LDC = {"ldq": 1, "ld1": 2, "ld1x3": 6, "ld2": 4, "ld1r": 1, "ldg": 1}


def deps(insns):
    """Edges (a, b, latency) of the sequential order: RAW (latency), WAR (0), WAW (1)."""
    edges = []
    last_w, reads = {}, {}
    for i, ins in enumerate(insns):
        rs = [("v", v) for v in ins.uses] + [("g", g) for g in ins.guses]
        ws = [("v", v) for v in ins.defs] + [("g", g) for g in ins.gdefs]
        for r in rs:
            if r in last_w:
                edges.append((last_w[r], i, LAT[insns[last_w[r]].kind]))
        for r in ws:
            for j in reads.get(r, []):
                if j != i:
                    edges.append((j, i, 0))
            if r in last_w and last_w[r] != i:
                edges.append((last_w[r], i, 1))
        for r in rs:
            reads.setdefault(r, []).append(i)
        for r in ws:
            last_w[r] = i
            reads[r] = []
    return edges


def list_schedule(insns, budget=32):
    """Greedy in-order dual-issue schedule (Cortex-A55-like resources): longest path first,
    keeping the number of live NEON registers within `budget`."""
    n = len(insns)
    succ = [[] for _ in range(n)]
    npred = [0] * n
    for a, b, l in deps(insns):
        succ[a].append((b, l))
        npred[b] += 1
    prio = [0] * n
    for i in reversed(range(n)):
        prio[i] = max([l + prio[b] for b, l in succ[i]] + [LAT[insns[i].kind]])
    ready = [0] * n
    done = [False] * n
    order = []
    cycle, ld_busy = 0, 0
    users = {}
    for i, ins in enumerate(insns):
        for v in ins.uses:
            users.setdefault(v, set()).add(i)
    live = set()
    pinned = set(v for ins in insns for v in ins.defs + ins.uses if v.pinned is not None)
    while len(order) < n:
        issued, fp, alu, st = 0, 2, 2, 1
        cands = [i for i in range(n) if not done[i] and npred[i] == 0 and ready[i] <= cycle]
        cands.sort(key=lambda i: (-prio[i], i))
        for i in cands:
            if issued == 2:
                break
            ins = insns[i]
            new = [v for v in ins.defs if v not in live and v not in pinned]
            if new and len(live) + len(new) > budget - len(pinned):
                continue
            k = ins.kind
            if k == "vq":
                if fp < 2:
                    continue
                fp = 0
            elif k == "vf":
                if fp < 1:
                    continue
                fp -= 1
            elif k in LDC:
                if ld_busy > cycle:
                    continue
                ld_busy = cycle + LDC[k]
            elif k == "alu":
                if alu == 0:
                    continue
                alu -= 1
            elif k == "st":
                if st == 0:
                    continue
                st -= 1
            issued += 1
            done[i] = True
            order.append(i)
            for v in new:
                live.add(v)
            for v in ins.uses:
                if v in users:
                    users[v].discard(i)
                    if not users[v] and v in live:
                        live.discard(v)
            for b, l in succ[i]:
                npred[b] -= 1
                ready[b] = max(ready[b], cycle + l)
        cycle += 1
        if cycle > 10000:
            raise RuntimeError("schedule stuck (register budget too small?)")
    return order


def allocate(insns, pinned_vars):
    """Linear scan: each variable one register from its first write to its last read; ld2
    pairs consecutive. Returns {var: reg} or None when 32 do not suffice."""
    first, last = {}, {}
    for i, ins in enumerate(insns):
        for v in ins.defs + ins.uses:
            first.setdefault(v, i)
            last[v] = i
    phys = {v: v.pinned for v in pinned_vars}
    free = sorted(set(range(32)) - set(phys.values()))
    active = []
    groups = {ins.pair[0]: ins.pair for ins in insns if ins.pair}
    seconds = {v for g in groups.values() for v in g[1:]}
    for i, ins in enumerate(insns):
        for end, v in list(active):
            if end < i:
                active.remove((end, v))
                free.append(phys[v])
        free.sort()
        for v in ins.defs:
            if v in phys or v in seconds:
                continue
            if v in groups:
                g = groups[v]
                got = next((r for r in free if all(r + k in free for k in range(len(g)))), None)
                if got is None:
                    return None
                for k, w in enumerate(g):
                    phys[w] = got + k
                    free.remove(got + k)
                    active.append((last[w], w))
            else:
                if not free:
                    return None
                # v8..v15 last: their low halves are callee-saved
                r = next((r for r in free if not 8 <= r <= 15), free[0])
                phys[v] = r
                free.remove(r)
                active.append((last[v], v))
    return phys


# ---------------------------------------------------------------------------------------
# llvm-mca


def to_mca(lines):
    """Rust asm text -> plain assembly for llvm-mca (GPR placeholders become x/w regs)."""
    names = {}

    def sub(m):
        n = m.group(1)
        names.setdefault(n, len(names))
        r = names[n]
        return f"w{r}" if m.group(2) else f"x{r}"

    text = "\n".join(lines)
    text = re.sub(r"\{(\w+)(:w)?\}", sub, text.replace("{{", "\x01").replace("}}", "\x02"))
    return text.replace("\x01", "{").replace("\x02", "}").replace("1b", "0")


_cache = {}


def mca(lines, cpu):
    text = to_mca(lines)
    key = (cpu, text)
    if key not in _cache:
        with tempfile.NamedTemporaryFile("w", suffix=".s", delete=False) as f:
            f.write(text + "\n")
        out = subprocess.run(["llvm-mca", "-mtriple=aarch64", f"-mcpu={cpu}", "-iterations=200",
                              f.name], capture_output=True, text=True).stdout
        os.unlink(f.name)
        m = re.search(r"Total Cycles:\s+(\d+)", out)
        if "error" in out or not m:
            raise RuntimeError("llvm-mca rejected:\n" + text)
        _cache[key] = int(m.group(1)) / 200 if m else 1e9
    return _cache[key]


LOOP_END = ["b.ne 1b"]


def body_lines(insns, order, pinned):
    seq = [insns[i] for i in order]
    phys = allocate(seq, pinned)
    if phys is None:
        return None
    return [ins.text(phys) for ins in seq] + LOOP_END


def valid(edges, order):
    pos = [0] * len(order)
    for p, j in enumerate(order):
        pos[j] = p
    return all(pos[a] < pos[b] for a, b, _ in edges)


def search(insns, order, pinned, cost, rounds, rng):
    """Local search over dependency-respecting reorderings (move one instruction)."""
    edges = deps(insns)
    lines = body_lines(insns, order, pinned)
    best = cost(lines) if lines else 1e9
    n = len(order)
    for _ in range(rounds):
        cand = list(order)
        i = rng.randrange(n)
        j = max(0, min(n - 1, i + rng.randint(-12, 12)))
        x = cand.pop(i)
        cand.insert(j, x)
        if not valid(edges, cand):
            continue
        lines = body_lines(insns, cand, pinned)
        if lines is None:
            continue
        c = cost(lines)
        if c <= best:
            best, order = c, cand
    return order, best


# ---------------------------------------------------------------------------------------
# List scheduling with llvm-mca as the machine model


def gpr_map(insns):
    names = {}
    for ins in insns:
        for m in re.finditer(r"\{(\w+)(:w)?\}", ins.fmt.replace("{{", "").replace("}}", "")):
            names.setdefault(m.group(1), len(names))
    for extra in ("cnt",):
        names.setdefault(extra, len(names))
    return names


def plain(lines, names):
    """Rust asm lines -> llvm-mca input with a fixed GPR numbering."""
    def sub(m):
        r = names[m.group(1)]
        return f"w{r}" if m.group(2) else f"x{r}"
    out = []
    for l in lines:
        l = l.replace("{{", "\x01").replace("}}", "\x02")
        l = re.sub(r"\{(\w+)(:w)?\}", sub, l)
        out.append(l.replace("\x01", "{").replace("\x02", "}").replace("1b", "0"))
    return out


def issue_cycles(regions, cpu):
    """Issue cycle of the last instruction of each region (one pass, in-order models)."""
    text = []
    for k, lines in enumerate(regions):
        text += [f"# LLVM-MCA-BEGIN r{k}"] + lines + ["# LLVM-MCA-END"]
    with tempfile.NamedTemporaryFile("w", suffix=".s", delete=False) as f:
        f.write("\n".join(text) + "\n")
    out = subprocess.run(["llvm-mca", "-mtriple=aarch64", f"-mcpu={cpu}", "-iterations=1",
                          "-timeline", "-timeline-max-cycles=100000", f.name],
                         capture_output=True, text=True)
    os.unlink(f.name)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[:2000])
    res = []
    for sec in out.stdout.split("Code Region - ")[1:]:
        tl = sec.split("Timeline view:")[1]
        last = None
        for l in tl.split("\n"):
            m = re.match(r"^\[0,(\d+)\]\s", l)
            if m:
                last = l[10:].find("D")
        res.append(last)
    return res


def mca_list_schedule(insns, pinned, cpu, names, context=()):
    """Greedy list schedule: among the ready instructions that fit in the registers, the one
    llvm-mca can issue earliest after the instructions already placed (and `context`, the
    end of the previous iteration); ties to the longest path to the end."""
    n = len(insns)
    edges = deps(insns)
    preds = [set() for _ in range(n)]
    succ = [[] for _ in range(n)]
    for a, b, l in edges:
        preds[b].add(a)
        succ[a].append((b, l))
    prio = [0] * n
    for i in reversed(range(n)):
        prio[i] = max([l + prio[b] for b, l in succ[i]] + [LAT[insns[i].kind]])
    uses_left = {}
    for ins in insns:
        for v in ins.uses:
            uses_left[v] = uses_left.get(v, 0) + 1
    phys = {v: v.pinned for v in pinned}
    owner = {v.pinned: v for v in pinned}
    groups = {ins.pair[0]: ins.pair for ins in insns if ins.pair}
    done = set()
    order = []
    lines = []

    def free_regs():
        fr = []
        for r in range(32):
            v = owner.get(r)
            if v is None or (v.pinned is None and uses_left.get(v, 0) == 0 and v in phys):
                fr.append(r)
        return fr

    def try_alloc(ins):
        fr = free_regs()
        # registers read by this instruction whose var dies here may be reused by its defs
        dying = [phys[v] for v in ins.uses if v in phys and v.pinned is None
                 and uses_left[v] == sum(1 for u in ins.uses if u is v)]
        prov = {}
        for v in ins.defs:
            if v in phys:
                continue
            if v in prov:
                continue
            if v in groups:
                g = groups[v]
                got = next((r for r in fr if all(r + k in fr and r + k < 32 for k in range(len(g)))), None)
                if got is None:
                    return None
                for k, w in enumerate(g):
                    prov[w] = got + k
                    fr.remove(got + k)
            else:
                cand = [r for r in fr if not 8 <= r <= 15] or fr
                if not cand:
                    if dying:
                        cand = dying
                    else:
                        return None
                prov[v] = cand[0]
                if cand[0] in fr:
                    fr.remove(cand[0])
        return prov

    while len(order) < n:
        ready = [i for i in range(n) if i not in done and preds[i] <= done]
        cands = []
        for i in ready:
            prov = try_alloc(insns[i])
            if prov is not None:
                cands.append((i, prov))
        if not cands:
            raise RuntimeError("no schedulable instruction (registers)")
        regions = []
        for i, prov in cands:
            m = dict(phys)
            m.update(prov)
            regions.append(list(context) + plain(lines + [insns[i].text(m)], names))
        cyc = issue_cycles(regions, cpu)
        k = min(range(len(cands)), key=lambda k: (cyc[k], -prio[cands[k][0]], cands[k][0]))
        i, prov = cands[k]
        for v, r in prov.items():
            phys[v] = r
            owner[r] = v
        lines.append(insns[i].text(phys))
        for v in insns[i].uses:
            uses_left[v] -= 1
        done.add(i)
        order.append(i)
    return order


# ---------------------------------------------------------------------------------------
# A replica of llvm-mca's in-order issue stage (llvm/lib/MCA/Stages/InOrderIssueStage.cpp)
# for the in-order models (Cortex-A55, Cortex-A53), so the schedule search can time
# thousands of orders a second. Per instruction form: (latency, micro-ops, {unit: busy
# cycles}, the gap an independent 3-cycle ALU op behind it waits), read from llvm-mca 14
# with single-instruction runs; `--check` compares the replica with llvm-mca itself.
#
# The stage issues in order, up to 2 micro-ops a cycle; an A55 128-bit NEON write
# (BeginGroup) starts a cycle; an instruction waits for its operands (ALU results reach
# ALU consumers 2 cycles early, 1 for a shifted or extended operand), for a free unit, and
# until it cannot write back before the last instruction issued (except stores and FP
# multiply-accumulates on the A55, which retire out of order).

TIMING = {
    "cortex-a55": {
        "scvtf.4s": (4, 1, {"FPALU": 1}, 1),
        "dup.4s.elem": (2, 1, {"FPALU": 1}, 0),
        "fmla.4s.elem": (4, 1, {"FPMAC": 1}, 0),
        "fmul.4s.elem": (4, 1, {"FPALU": 1}, 1),
        "fcvtas.4s": (4, 1, {"FPALU": 1}, 1),
        "sqxtn.4h": (4, 1, {"FPALU": 2}, 1),
        "sqxtn2.8h": (4, 1, {"FPALU": 2}, 1),
        "sqxtn.8b": (4, 1, {"FPALU": 2}, 1),
        "sqxtn2.16b": (4, 1, {"FPALU": 2}, 1),
        "smax.16b": (4, 1, {"FPALU": 2}, 1),
        "smin.16b": (4, 1, {"FPALU": 2}, 1),
        "str.q": (1, 1, {"St": 1}, 0),
        "ldp.x": (5, 2, {"Ld": 2}, 2),
        "add.x.imm": (3, 1, {"ALU": 1}, 0),
        "add.x.sxtw": (3, 1, {"ALU": 1}, 0),
        "add.x.reg": (3, 1, {"ALU": 1}, 0),
        "add.x.asr": (3, 1, {"ALU": 1}, 0),
        "mov.x": (3, 1, {"ALU": 1}, 0),
        "ldr.q": (3, 1, {"Ld": 1}, 0),
        "ldur.q": (3, 1, {"Ld": 1}, 0),
        "ld1.16b": (5, 1, {"Ld": 2}, 2),
        "ld2.16b": (7, 1, {"Ld": 4}, 4),
        "ld1r.4s": (4, 1, {"Ld": 1}, 1),
        "smull.8b": (4, 1, {"FPALU": 2}, 1),
        "smull2.16b": (4, 1, {"FPALU": 2}, 1),
        "smlal.8b": (4, 1, {"FPALU": 2}, 1),
        "smlal2.16b": (4, 1, {"FPALU": 2}, 1),
        "saddl.4h": (4, 1, {"FPALU": 2}, 1),
        "saddl2.8h": (4, 1, {"FPALU": 2}, 1),
        "saddw.4h": (4, 1, {"FPALU": 2}, 1),
        "saddw2.8h": (4, 1, {"FPALU": 2}, 1),
        "add.4s": (4, 1, {"FPALU": 2}, 1),
        "add.8h": (4, 1, {"FPALU": 2}, 1),
        "subs.x.imm": (3, 1, {"ALU": 1}, 0),
        "b.ne": (1, 1, {"B": 1}, 0),
        "ld1.8b": (4, 1, {"Ld": 1}, 1),
        "ld1.d.lane": (4, 1, {"Ld": 1}, 1),
        "ldr.d": (3, 1, {"Ld": 1}, 0),
        "sqxtun.8b": (4, 1, {"FPALU": 2}, 1),
        "sqxtun2.16b": (4, 1, {"FPALU": 2}, 1),
        "umin.16b": (4, 1, {"FPALU": 2}, 1),
        "ldr.x": (3, 1, {"Ld": 1}, 0),
        "lsr.x": (3, 1, {"ALU": 1}, 0),
        "movi.4s": (4, 1, {"FPALU": 2}, 1),
    },
    "cortex-a53": {
        "scvtf.4s": (6, 1, {"FPALU": 1}, 3),
        "dup.4s.elem": (6, 1, {"FPALU": 1}, 3),
        "fmla.4s.elem": (10, 1, {"FPMDS": 1}, 7),
        "fmul.4s.elem": (6, 1, {"FPALU": 1}, 3),
        "fcvtas.4s": (6, 1, {"FPALU": 1}, 3),
        "sqxtn.4h": (6, 1, {"FPALU": 1}, 3),
        "sqxtn2.8h": (6, 1, {"FPALU": 1}, 3),
        "sqxtn.8b": (6, 1, {"FPALU": 1}, 3),
        "sqxtn2.16b": (6, 1, {"FPALU": 1}, 3),
        "smax.16b": (6, 1, {"FPALU": 1}, 3),
        "smin.16b": (6, 1, {"FPALU": 1}, 3),
        "str.q": (4, 1, {"LdSt": 1}, 1),
        "ldp.x": (4, 2, {"LdSt": 2}, 1),
        "add.x.imm": (3, 1, {"ALU": 1}, 0),
        "add.x.sxtw": (3, 1, {"ALU": 1}, 0),
        "add.x.reg": (3, 1, {"ALU": 1}, 0),
        "add.x.asr": (3, 1, {"ALU": 1}, 0),
        "mov.x": (3, 1, {"ALU": 1}, 0),
        "ldr.q": (4, 1, {"LdSt": 1}, 1),
        "ldur.q": (4, 1, {"LdSt": 1}, 1),
        "ld1.16b": (4, 1, {"LdSt": 1}, 1),
        "ld2.16b": (7, 1, {"LdSt": 4}, 4),
        "ld1r.4s": (4, 1, {"LdSt": 1}, 1),
        "smull.8b": (6, 1, {"FPALU": 1}, 3),
        "smull2.16b": (6, 1, {"FPALU": 1}, 3),
        "smlal.8b": (6, 1, {"FPALU": 1}, 3),
        "smlal2.16b": (6, 1, {"FPALU": 1}, 3),
        "saddl.4h": (6, 1, {"FPALU": 1}, 3),
        "saddl2.8h": (6, 1, {"FPALU": 1}, 3),
        "saddw.4h": (6, 1, {"FPALU": 1}, 3),
        "saddw2.8h": (6, 1, {"FPALU": 1}, 3),
        "add.4s": (6, 1, {"FPALU": 1}, 3),
        "add.8h": (6, 1, {"FPALU": 1}, 3),
        "subs.x.imm": (3, 1, {"ALU": 1}, 0),
        "b.ne": (1, 1, {"B": 1}, 0),
        "ld1.8b": (4, 1, {"LdSt": 1}, 1),
        "ld1.d.lane": (4, 1, {"LdSt": 1}, 1),
        "ldr.d": (4, 1, {"LdSt": 1}, 1),
        "sqxtun.8b": (6, 1, {"FPALU": 1}, 3),
        "sqxtun2.16b": (6, 1, {"FPALU": 1}, 3),
        "umin.16b": (6, 1, {"FPALU": 1}, 3),
        "ldr.x": (4, 1, {"LdSt": 1}, 1),
        "lsr.x": (2, 1, {"ALU": 1}, 0),
        "movi.4s": (6, 1, {"FPALU": 1}, 3),
    },
}

UNITS = {"cortex-a55": {"ALU": 2, "FPALU": 2, "FPMAC": 2, "Ld": 1, "St": 1, "B": 1, "MAC": 1},
         "cortex-a53": {"ALU": 2, "FPALU": 1, "FPMDS": 1, "LdSt": 1, "B": 1, "MAC": 1}}
ALU_FORMS = {"add.x.imm", "add.x.sxtw", "add.x.reg", "add.x.asr", "mov.x", "lsr.x", "subs.x.imm"}


def form_of(t):
    """The timing-table key of an instruction's text."""
    m = t.split()[0]
    if m in ("smull", "smlal"):
        return m + ".8b"
    if m in ("smull2", "smlal2"):
        return m + ".16b"
    if m in ("saddl", "saddw"):
        return m + ".4h"
    if m in ("saddl2", "saddw2"):
        return m + ".8h"
    if m == "add":
        if " v" in t:
            return "add.8h" if ".8h" in t else "add.4s"
        for k in ("sxtw", "asr"):
            if k in t:
                return "add.x." + k
        return "add.x.imm" if "#" in t else "add.x.reg"
    if m == "sqxtn":
        return "sqxtn.8b" if ".8b" in t else "sqxtn.4h"
    if m == "sqxtn2":
        return "sqxtn2.16b" if ".16b" in t else "sqxtn2.8h"
    if m in ("smax", "smin", "umin"):
        return m + ".16b"
    if m == "ldr":
        r = t.split()[1][0]
        return {"x": "ldr.x", "d": "ldr.d"}.get(r, "ldr.q")
    if m == "ld1":
        if "}[" in t:
            return "ld1.d.lane"
        return "ld1.8b" if ".8b" in t else "ld1.16b"
    simple = {"str": "str.q", "ldp": "ldp.x", "mov": "mov.x", "lsr": "lsr.x", "ldur": "ldur.q",
              "ld2": "ld2.16b", "ld1r": "ld1r.4s", "dup": "dup.4s.elem", "fmla": "fmla.4s.elem",
              "fmul": "fmul.4s.elem", "scvtf": "scvtf.4s", "fcvtas": "fcvtas.4s",
              "subs": "subs.x.imm", "b.ne": "b.ne", "movi": "movi.4s", "sqxtun": "sqxtun.8b",
              "sqxtun2": "sqxtun2.16b"}
    return simple[m]


class Rec:
    """One instruction as the replica sees it."""

    def __init__(self, t, cpu, defs, uses, ext):
        f = form_of(t)
        lat, uops, use, after_alu = TIMING[cpu][f]
        self.lat, self.uops = lat, uops
        self.units = list(use.items())
        self.alu = f in ALU_FORMS
        self.ooo = cpu == "cortex-a55" and (f == "str.q" or (after_alu == 0 and lat > 3))
        self.begin = cpu == "cortex-a55" and use.get("FPALU", 0) >= 2
        lats = [lat] * len(defs)
        if f == "ldp.x":
            lats = [4, 5 if cpu == "cortex-a55" else 4][:len(defs)]
        self.defs = list(zip(defs, lats))
        self.uses = [(u, ext and u in ext) for u in uses]


def records(insns, cpu):
    """Replica records of a loop body (its variables stand for their registers: within an
    iteration every non-pinned variable is written before it is read) and its branch."""
    out = []
    for ins in insns:
        t = ins.text({v: 0 for v in ins.regs}).replace("{", "").replace("}", "")
        defs = [("v", v) for v in ins.defs] + [("g", g) for g in ins.gdefs]
        uses = [("v", v) for v in ins.uses] + [("g", g) for g in ins.guses]
        ext = set()
        if ("sxtw" in t or "asr" in t) and ins.guses:
            ext = {("g", ins.guses[-1])}
        out.append(Rec(t, cpu, defs, uses, ext))
    out.append(Rec("b.ne 0", cpu, [], [("g", "nzcv")], set()))
    return out


def simulate(recs, order, cpu, iters=5):
    """Cycles per iteration of the loop (`order` into `recs`, then the branch)."""
    seq = [recs[i] for i in order] + recs[-1:]
    ready = {}
    busy = {u: [0] * n for u, n in UNITS[cpu].items()}
    cyc, band, nissued, lwb = 0, 2, 0, -1
    starts = []
    for _ in range(iters):
        for k, r in enumerate(seq):
            while True:
                if (r.begin and nissued) or band < r.uops:
                    cyc, band, nissued = cyc + 1, 2, 0
                    continue
                wait = 0
                for key, ext in r.uses:
                    t = ready.get(key)
                    if t is not None:
                        adv = (1 if ext else 2) if (r.alu and t[1]) else 0
                        wait = max(wait, t[0] - adv - cyc)
                if wait > 0:
                    cyc, band, nissued = cyc + wait, 2, 0
                    continue
                if any(min(busy[u]) > cyc for u, _ in r.units):
                    cyc, band, nissued = cyc + 1, 2, 0
                    continue
                if not r.ooo and lwb > cyc:
                    first = min([l for _, l in r.defs] + [r.lat])
                    if cyc + first < lwb:
                        cyc, band, nissued = lwb - first, 2, 0
                        continue
                break
            if k == 0:
                starts.append(cyc)
            for u, c in r.units:
                inst = busy[u]
                inst[inst.index(min(inst))] = cyc + c
            for key, l in r.defs:
                ready[key] = (cyc + l, r.alu)
            if not r.ooo:
                lwb = cyc + r.lat
            band -= r.uops
            nissued += r.uops
            if band <= 0:
                cyc, band, nissued = cyc + 1, 2, 0
    return (starts[-1] - starts[1]) / (len(starts) - 2)


def anneal(insns, pinned, order, weights, rounds, rng, t0=3.0, t1=0.05):
    """Simulated annealing over dependency-respecting moves of one instruction, keeping the
    registers allocatable; cost: the weighted replica cycles."""
    recs = {c: records(insns, c) for c in weights}
    n = len(insns)
    preds = [[] for _ in range(n)]
    succs = [[] for _ in range(n)]
    for a, b, _ in deps(insns):
        preds[b].append(a)
        succs[a].append(b)

    def cost(o):
        return sum(w * simulate(recs[c], o, c) for c, w in weights.items())

    cur = cost(order)
    best, best_o = cur, list(order)
    pos = [0] * n
    for p, j in enumerate(order):
        pos[j] = p
    for r in range(rounds):
        temp = t0 * (t1 / t0) ** (r / max(1, rounds - 1))
        p = rng.randrange(n)
        j = order[p]
        lo = max([pos[a] for a in preds[j]] + [-1]) + 1
        hi = min([pos[b] for b in succs[j]] + [n]) - 1
        if hi <= lo:
            continue
        q = rng.randint(lo, hi)
        if q == p:
            continue
        o = list(order)
        o.pop(p)
        o.insert(q, j)
        if allocate([insns[i] for i in o], pinned) is None:
            continue
        c = cost(o)
        if c <= cur or rng.random() < math.exp((cur - c) / temp):
            order, cur = o, c
            for pp, jj in enumerate(order):
                pos[jj] = pp
            if c < best:
                best, best_o = c, list(o)
    return best_o, best


# ---------------------------------------------------------------------------------------
# Rust output

# LoopArgs field offsets (see asm_loops.rs).
ARGS = {"desc0": 0, "nblk": 8, "plane": 16, "oplane": 24, "tstride": 32, "nch": 40, "dummy": 48,
        "input": 56, "out": 64, "taps": 72, "consts": 80, "w": 88, "clamp": 96}

PROLOGUE_PTRS = [
    "ldp {da}, {db}, [{desc}]",
    "add {desc}, {desc}, #16",
    "add {r0}, {inb}, {da:w}, sxtw",
    "add {r1}, {r0}, {w}",
    "add {r2}, {r1}, {w}",
    "add {tp}, {tb}, {db}",
    "add {ocur}, {ob}, {da}, asr #32",
]


def emit(fn, doc, body, tail, counts):
    """One Rust function running the loop over `LoopArgs`."""
    pro = [
        "movi v16.4s, #0", "movi v17.4s, #0", "movi v18.4s, #0", "movi v19.4s, #0",
        "movi v28.4s, #0",
        f"ldr q30, [{{args}}, #{ARGS['clamp']}]",
        f"ldr q31, [{{args}}, #{ARGS['clamp'] + 16}]",
        f"ldr {{inb}}, [{{args}}, #{ARGS['input']}]",
        f"ldr {{ob}}, [{{args}}, #{ARGS['out']}]",
        f"ldr {{tb}}, [{{args}}, #{ARGS['taps']}]",
        f"ldr {{cp}}, [{{args}}, #{ARGS['consts']}]",
        f"ldr {{w}}, [{{args}}, #{ARGS['w']}]",
        f"ldr {{oprev}}, [{{args}}, #{ARGS['dummy']}]",
        f"ldr {{desc}}, [{{args}}, #{ARGS['desc0']}]",
        f"ldr {{cnt}}, [{{args}}, #{ARGS['nblk']}]",
    ] + PROLOGUE_PTRS
    nxt = [
        f"ldr {{da}}, [{{args}}, #{ARGS['nch']}]",
        "subs {da}, {da}, #1",
        f"str {{da}}, [{{args}}, #{ARGS['nch']}]",
        "b.eq 3f",
        f"ldr {{da}}, [{{args}}, #{ARGS['plane']}]",
        "add {inb}, {inb}, {da}",
        f"ldr {{da}}, [{{args}}, #{ARGS['oplane']}]",
        "add {ob}, {ob}, {da}",
        f"ldr {{da}}, [{{args}}, #{ARGS['tstride']}]",
        "add {tb}, {tb}, {da}",
        "add {cp}, {cp}, #16",
        f"ldr {{desc}}, [{{args}}, #{ARGS['desc0']}]",
        f"ldr {{cnt}}, [{{args}}, #{ARGS['nblk']}]",
    ] + PROLOGUE_PTRS + ["b 2b"]
    lines = pro + ["2:"] + [l.replace("1b", "2b") for l in body] + nxt + ["3:"] + tail
    names = []
    for l in lines:
        for m in re.finditer(r"\{(\w+)(:w)?\}", l.replace("{{", "").replace("}}", "")):
            if m.group(1) not in names:
                names.append(m.group(1))
    inputs = {"args": "in(reg) args"}
    inouts = {}
    out = [f"/// {l}" if l else "///" for l in doc.split("\n")]
    out.append(f"/// ({counts})")
    out.append("///")
    out.append("/// # Safety")
    out.append("/// See [`LoopArgs`].")
    out.append(f"pub unsafe fn {fn}(")
    out.append("    args: *mut LoopArgs,")
    out.append(") {")
    out.append("    std::arch::asm!(")
    for l in lines:
        out.append(f"        \"{l}\",")
    for n in names:
        if n in inputs:
            out.append(f"        {n} = {inputs[n]},")
        elif n in inouts:
            out.append(f"        {n} = {inouts[n]},")
        else:
            out.append(f"        {n} = out(reg) _,")
    clob = [f"out(\"v{i}\") _" for i in range(32)]
    for k in range(0, len(clob), 6):
        out.append("        " + ", ".join(clob[k:k + 6]) + ",")
    out.append("        options(nostack),")
    out.append("    );")
    out.append("}")
    return "\n".join(out)


VARIANTS = [
    # (name, llvm-mca model(s) it is scheduled for)
    ("a55", "cortex-a55"),
    ("a72", "cortex-a72"),
]
# Weight of LLVM's Cortex-A53 model next to the A55 model for the in-order loops: the same
# code runs on the A53 and is timed with both models (see the armcycles README).
A53_WEIGHT = 0.3


def build(job):
    """(body lines, tail lines, llvm-mca cycles per model) of one loop."""
    core, cpu, prec, stride, rounds, seed = job
    epi, conv, last, pinned = streams(prec, stride, loads="ldr")
    insns = epi + conv + last
    order = list_schedule(insns)
    if cpu == "cortex-a72":
        # Out of order: the stream order matters little; a short llvm-mca guided search.
        order, _ = search(insns, order, pinned, lambda ls: mca(ls, cpu), rounds // 100,
                          random.Random(seed))
    else:
        weights = {"cortex-a55": 1.0, "cortex-a53": A53_WEIGHT}
        order, _ = anneal(insns, pinned, order, weights, rounds, random.Random(seed))
    seq = [insns[i] for i in order]
    phys = allocate(seq, pinned)
    body = [ins.text(phys) for ins in seq] + LOOP_END
    # The tail: the last pending block's epilogue alone.
    tseq = [epi[i] for i in list_schedule(epi)]
    tphys = allocate(tseq, pinned)
    tail = [ins.text(tphys) for ins in tseq]
    cyc = {c: mca(body, c) for c in ("cortex-a53", "cortex-a55", "cortex-a72")}
    sim = {c: simulate(records(insns, c), order, c) for c in ("cortex-a53", "cortex-a55")}
    return core, prec, stride, body, tail, cyc, sim


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=30000, help="annealing moves per loop")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    jobs = [(core, cpu, prec, stride, a.rounds, a.seed)
            for core, cpu in VARIANTS for prec in (8, 7) for stride in (1, 2)]
    import multiprocessing
    with multiprocessing.Pool(a.jobs) as pool:
        results = pool.map(build, jobs)
    out = [HEADER]
    for core, prec, stride, body, tail, cyc, sim in results:
        fn = f"loop_{core}_int{prec}_s{stride}"
        doc = (f"INT{prec}, stride {stride}, int8 output; scheduled for the "
               f"{'Cortex-A53 (llvm-mca A55 + 0.3 A53 models)' if core == 'a55' else 'Cortex-A72'}.")
        counts = "llvm-mca cycles per block of 16: " + ", ".join(
            f"{c.replace('cortex-', '')} {v:.0f}" for c, v in cyc.items())
        out.append(emit(fn, doc, body, tail, counts))
        check = " ".join(f"{c.replace('cortex-', '')} replica {v:.0f}" for c, v in sim.items())
        print(fn, counts, "|", check, file=sys.stderr)
    print("\n\n".join(out))


HEADER = '''//! GENERATED by `gen_asm.py` (do not edit): the software-pipelined NEON loops of the
//! unpadded 3x3 depthwise path. See `gen_asm.py` for how they are built and `mod.rs` for
//! the data they walk.

/// What a loop walks: `nch` channels of `nblk` blocks each, from channel 0's `input`,
/// `out`, `taps` (its tap table) and `consts`, the next channel's `plane` input bytes,
/// `oplane` output bytes, `tstride` tap-table bytes and 16 constant bytes further. Blocks
/// are described by `desc0[..nblk]` plus one readable entry after them: two words, the
/// block's input offset (its first input row, column of its first tap; i32) | its output
/// offset << 32 (bytes, i32), then the byte offset of its tap set (9 vectors of 16 taps) in
/// the channel's tap table. A channel's constants are `[scale, bias, top, 0]`; `clamp` the
/// 16 lower then the 16 upper bounds of the int8 result. Before its first block a loop
/// stores 16 bytes to `dummy`. `nch` counts down.
///
/// Every input row a block reads (rows 0..3 of `w` bytes from its input offset, 18 bytes
/// each, 34 for stride 2) must be readable, its 16 outputs writable.
#[repr(C)]
pub struct LoopArgs {
    pub desc0: *const [u64; 2],
    pub nblk: usize,
    pub plane: usize,
    pub oplane: usize,
    pub tstride: usize,
    pub nch: usize,
    pub dummy: *mut u8,
    pub input: *const i8,
    pub out: *mut u8,
    pub taps: *const u8,
    pub consts: *const f32,
    pub w: usize,
    pub clamp: [i8; 32],
}'''


if __name__ == "__main__":
    main()
