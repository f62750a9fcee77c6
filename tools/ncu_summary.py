#!/usr/bin/env python3
"""Per-kernel time of one profiled range from ncu's CSV (gpu__time_duration.sum).

  JANUS_PROFILE_STEP=2 ncu --profile-from-start off --clock-control none \\
      --cache-control none --metrics gpu__time_duration.sum --csv \\
      janus bench e2e ... > ncu.csv
  tools/ncu_summary.py ncu.csv [--step-ms MS]

Prints kernels grouped by name: launches, total microseconds, share; with
--step-ms, the gap between the step's wall time and the kernels' sum (launch
gaps, host work, synchronisation).
"""
import argparse
import collections
import csv
import io
import sys

ap = argparse.ArgumentParser()
ap.add_argument("csv")
ap.add_argument("--step-ms", type=float, default=0)
a = ap.parse_args()
text = open(a.csv, errors="replace").read()
start = text.find('"ID"')
if start < 0:
    sys.exit("ncu_summary: no CSV table in " + a.csv)
rows = list(csv.DictReader(io.StringIO(text[start:])))
tot = collections.defaultdict(float)
cnt = collections.Counter()
for r in rows:
    if r.get("Metric Name") != "gpu__time_duration.sum":
        continue
    name = r["Kernel Name"].split("(")[0].split("<")[0].strip()
    v = float(r["Metric Value"].replace(",", ""))
    unit = r.get("Metric Unit", "ns")
    us = v / 1e3 if unit in ("ns", "nsecond") else v * 1e3 if unit in ("ms", "msecond") else v if unit in ("us", "usecond") else v / 1e3
    tot[name] += us
    cnt[name] += 1
all_us = sum(tot.values())
print(f"{'kernel':60s} {'launches':>8s} {'us':>10s} {'share':>6s}")
for k, v in sorted(tot.items(), key=lambda kv: -kv[1]):
    print(f"{k[:60]:60s} {cnt[k]:8d} {v:10.1f} {100 * v / all_us:5.1f}%")
print(f"{'all kernels':60s} {sum(cnt.values()):8d} {all_us:10.1f}")
if a.step_ms:
    print(f"step wall {a.step_ms * 1e3:.1f} us; kernels {all_us:.1f} us; gaps {a.step_ms * 1e3 - all_us:.1f} us")
