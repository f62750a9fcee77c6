#!/usr/bin/env python3
"""plot_simulation.py: PNG of `janus plan --simulate` CSV files: output tokens/s
per GPU against the GPU count, best monolithic and best disaggregated layout,
one panel per model.

usage: plot_simulation.py SIM.csv [SIM2.csv ...] --out plot.png
"""
import argparse
import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", nargs="+")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    series = {}
    for path in a.csv:
        try:
            with open(path, newline="") as f:
                for row in csv.DictReader(f):
                    key = (os.path.basename(row["model"].rstrip("/")), row["hardware"], row["slo_tpot_ms"])
                    series.setdefault(key, []).append(row)
        except (OSError, KeyError) as e:
            sys.exit(f"plot_simulation: {path}: not a janus plan --simulate CSV ({e})")
    if not series:
        sys.exit("plot_simulation: no rows")
    fig, axes = plt.subplots(1, len(series), figsize=(5.5 * len(series), 4.2), squeeze=False)
    for ax, ((model, hw, slo), rows) in zip(axes[0], sorted(series.items())):
        rows.sort(key=lambda r: int(r["gpus"]))
        g = [int(r["gpus"]) for r in rows]
        ax.plot(g, [float(r["best_monolithic_per_gpu"]) for r in rows], "o-", label="monolithic (expert parallel)")
        ax.plot(g, [float(r["best_disaggregated_per_gpu"]) for r in rows], "s-", label="disaggregated (attention | MoE)")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("GPUs")
        ax.set_ylabel("output tokens/s per GPU (predicted)")
        ax.set_title(f"{model} on {hw}, TPOT SLO {float(slo):.0f} ms", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"plot_simulation: wrote {a.out}")


if __name__ == "__main__":
    main()
