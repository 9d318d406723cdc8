#!/usr/bin/env python3
"""How a parallel layer's work spreads over the RK3399's 4 Cortex-A53 + 2 Cortex-A72 workers,
modeled from bench-arm-model.sh's results (no board here to measure it):

    scripts/work_split.py [--work target/arm-model] [--models ...] [--tasks-per-worker 16]

A big core's speed relative to a little one is taken per model and precision from the modeled
1-thread runs (A53 run timed by LLVM's A55 model at 1.5 GHz vs the A72 run at 1.8 GHz). A layer
is cut into equal tasks claimed dynamically, as the pool does on mixed clusters
(`Pool::mixed_cores`: the int8 and fp32 GEMMs, the integer Winograd and the depthwise int8
kernel cut Pool::TASKS_PER_MIXED_WORKER = 16 per worker); the same layer cut into 4 tasks per
worker (the earlier setting) and into one task per worker (a static equal split) is shown
for comparison. Printed per row: the layer's time against the ideal
(all six cores busy to the end), and how busy each cluster is. Equal task sizes and one speed
ratio per model are the model's assumptions; `eq-bench --workers` reports the real split on a
board. Standard library only.
"""

import argparse
import heapq
import json
import os


def speed_ratio(work, model, prec):
    """A72 speed over A53 speed (the A55-model ms over the A72 ms), or None."""
    d = os.path.join(work, "ours", model, prec)
    try:
        little = json.load(open(os.path.join(d, "cortex-a53.json")))["cpus"]["cortex-a55"]["ms"]
        big = json.load(open(os.path.join(d, "cortex-a72.json")))["cpus"]["cortex-a72"]["ms"]
    except (OSError, KeyError, ValueError):
        return None
    return little / big


def simulate(speeds, tasks):
    """Greedy dynamic claiming of `tasks` equal tasks (total work 1): the layer's end time
    and each worker's busy time."""
    size = 1.0 / tasks
    free = [(0.0, w) for w in range(len(speeds))]
    heapq.heapify(free)
    busy = [0.0] * len(speeds)
    end = 0.0
    for _ in range(tasks):
        t, w = heapq.heappop(free)
        d = size / speeds[w]
        busy[w] += d
        end = max(end, t + d)
        heapq.heappush(free, (t + d, w))
    return end, busy


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="target/arm-model")
    ap.add_argument("--models", default="squeezenet,mobilenet,resnet50,vgg16,mobilenet_v2")
    ap.add_argument("--tasks-per-worker", type=int, default=16)
    a = ap.parse_args()
    little, big = 4, 2
    n = little + big
    print(f"| Model | precision | A72 ÷ A53 speed | {a.tasks_per_worker * n} tasks: time ÷ ideal "
          "| A53 busy | A72 busy | 24 tasks: time ÷ ideal | 6 tasks (static): time ÷ ideal |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for model in a.models.split(","):
        for prec in ("fp32", "int8", "int7"):
            s = speed_ratio(a.work, model, prec)
            if s is None:
                continue
            speeds = [1.0] * little + [s] * big
            ideal = 1.0 / sum(speeds)
            end, busy = simulate(speeds, a.tasks_per_worker * n)
            end4, _ = simulate(speeds, 4 * n)
            end1, _ = simulate(speeds, n)

            def pct(xs):
                return f"{100 * sum(xs) / (len(xs) * end):.0f} %"

            print(f"| {model} | {prec.upper()} | {s:.2f} | {end / ideal:.2f} | "
                  f"{pct(busy[:little])} | {pct(busy[little:])} | {end4 / ideal:.2f} | "
                  f"{end1 / ideal:.2f} |")

if __name__ == "__main__":
    main()
