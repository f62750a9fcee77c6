#!/usr/bin/env python3
"""test_report.py: tools/report on real janus runs (monolithic, and disaggregated
1 attention + 2 MoE ranks so the exchange timing attributes are non-zero), on
copies given a timeline, and on bad input. The numbers report.md must show are
recomputed here from the results file with h5py + numpy, not through janus_h5.

usage: python3 tests/test_report.py JANUS_BINARY
Prints one line per check and ends with "N passed, N failed"; exits 1 on failure.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

import h5py
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPORT = os.path.join(ROOT, "tools", "report")
MODEL = os.path.join(ROOT, "inputs", "model")
REQUESTS = os.path.join(ROOT, "inputs", "requests.h5")

PNGS = ["tokens_per_request.png", "ttft.png", "tpot.png", "expert_heatmap.png", "expert_load.png",
        "phase_times.png"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

passed = 0
failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"PASS {name}")
    else:
        failed += 1
        print(f"FAIL {name}{': ' + detail if detail else ''}")
    return ok


def run(args, timeout=600):
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    return p.returncode, p.stdout, p.stderr


def report(results, out):
    return run([sys.executable, REPORT, results, "--out", out], timeout=300)


# ---- PNG ------------------------------------------------------------------------


def png_info(path):
    """(width, height, distinct colours) of a PNG: signature, chunk CRCs and IHDR
    checked here with struct + zlib; the pixels decoded by matplotlib (Pillow)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != PNG_MAGIC:
        raise ValueError("no PNG signature")
    pos, w, seen = 8, None, []
    while pos + 12 <= len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        if zlib.crc32(kind + body) != struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0]:
            raise ValueError(f"bad CRC in chunk {kind!r}")
        seen.append(kind)
        if kind == b"IHDR":
            w, h = struct.unpack(">II", body[:8])
        pos += 12 + n
        if kind == b"IEND":
            break
    if not seen or seen[0] != b"IHDR" or b"IDAT" not in seen or seen[-1] != b"IEND":
        raise ValueError(f"chunks {seen[:4]}...{seen[-1:]}: not IHDR ... IDAT ... IEND")
    img = mpimg.imread(path)
    if img.shape[:2] != (h, w):
        raise ValueError(f"decoded {img.shape}, IHDR says {w}x{h}")
    px = (np.asarray(img)[..., :3] * 255).astype(np.uint8).reshape(-1, 3)
    return w, h, len(np.unique(px, axis=0))


def check_pngs(what, out, names):
    for name in names:
        path = os.path.join(out, name)
        if not check(f"{what}: {name} exists", os.path.isfile(path)):
            continue
        size = os.path.getsize(path)
        try:
            w, h, colours = png_info(path)
            ok, detail = True, f"{w}x{h}, {colours} colours, {size} bytes"
        except (ValueError, zlib.error, struct.error) as ex:
            ok, detail, w, h, colours = False, str(ex), 0, 0, 0
        check(f"{what}: {name} is a valid PNG (signature, CRCs)", ok, detail)
        check(f"{what}: {name} is non-trivial (>= 5 KB, >= 300x200 px, not one flat colour)",
              ok and size >= 5000 and w >= 300 and h >= 200 and colours >= 8, detail)


# ---- report.md ---------------------------------------------------------------------


def table_row(md, first_cell, within=None):
    """Cells of the first markdown table row whose first cell is first_cell (in
    the section titled within, if given)."""
    text = section(md, within) if within else md
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cells and cells[0] == first_cell:
                return cells
    return None


def section(md, title):
    """Text of the '## title' section, up to the next '## '."""
    out, inside = [], False
    for line in md.splitlines():
        if line.startswith("## "):
            inside = line[3:].strip() == title
            continue
        if inside:
            out.append(line)
    return "\n".join(out)


def expected(results):
    """What report.md must show, from the results file read with h5py + numpy."""
    with h5py.File(results, "r") as f:
        off = f["results/offsets"][...]
        ttft = f["results/ttft_s"][...]
        tpot = f["results/tpot_s"][...]
        finish = f["results/finish_reason"][...]
        counts = f["stats/expert_counts"][...]
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    gen = np.diff(off)
    tp = tpot[gen >= 2]
    return {"n": len(gen), "total": int(off[-1]), "ttft": ttft, "tpot": tp, "finish": finish,
            "counts": counts, "attrs": attrs}


def ms(x):
    return f"{x * 1e3:.3f}"


def check_markdown(what, out, results, timeline):
    path = os.path.join(out, "report.md")
    if not check(f"{what}: report.md exists", os.path.isfile(path)):
        return
    with open(path) as f:
        md = f.read()
    e = expected(results)
    a = e["attrs"]

    row = table_row(md, "generated tokens (total, from /results/offsets)", "Requests and tokens")
    check(f"{what}: report.md generated token total == {e['total']} (offsets[-1])",
          row is not None and row[1] == str(e["total"]), f"row {row}")
    row = table_row(md, "generated_tokens", "Run")
    check(f"{what}: run table generated_tokens == {e['total']}", row is not None and row[1] == str(e["total"]),
          f"row {row}")
    row = table_row(md, "requests", "Requests and tokens")
    check(f"{what}: requests == {e['n']}", row is not None and row[1] == str(e["n"]), f"row {row}")
    for key in ("model", "layout", "ranks", "attn_ranks", "moe_ranks"):
        row = table_row(md, key, "Run")
        want = a[key]
        want = str(int(want)) if isinstance(want, (float, np.floating)) else str(want)
        check(f"{what}: run table {key} == {want!r}", row is not None and row[1] == want, f"row {row}")
    row = table_row(md, "plan", "Run")
    check(f"{what}: run table plan is the plan attribute", row is not None and
          json.loads(row[1].strip("`").replace("\\|", "|")) == json.loads(a["plan"]), f"row {row}")
    for key in ("wall_s", "tokens_per_s"):
        row = table_row(md, key, "Run")
        check(f"{what}: run table {key} == {a[key]:.6g}", row is not None and row[1] == f"{a[key]:.6g}",
              f"row {row}")

    for name, v in (("TTFT", e["ttft"]), ("TPOT", e["tpot"])):
        row = table_row(md, name, "Latency")
        want = [str(len(v)), ms(np.mean(v)), ms(np.percentile(v, 50)), ms(np.percentile(v, 90)),
                ms(np.percentile(v, 99)), ms(np.max(v))]
        check(f"{what}: {name} row: n, mean, p50 {want[2]}, p90 {want[3]}, p99 {want[4]}, max (ms, numpy)",
              row is not None and row[1:] == want, f"row {row}, want {want}")
    check(f"{what}: TPOT counts only requests with >= 2 tokens ({len(e['tpot'])})",
          (table_row(md, "TPOT", "Latency") or [None, None])[1] == str(len(e["tpot"])))

    for code, label in ((0, "length"), (1, "stop (EOS)")):
        row = table_row(md, label, "Finish reasons")
        want = int(np.sum(e["finish"] == code))
        check(f"{what}: finish reason {label}: {want}", row is not None and row[1] == str(want), f"row {row}")

    counts = e["counts"]
    ok = True
    for l in range(counts.shape[0]):
        row = table_row(md, str(l), "Expert load")
        mean = counts[l].mean()
        want_ratio = f"{counts[l].max() / mean:.3f}" if mean > 0 else "n/a"
        if row is None or row[3] != str(int(counts[l].max())) or row[5] != want_ratio:
            ok = False
            break
    check(f"{what}: expert load table: per-layer max and max/mean match /stats/expert_counts", ok,
          f"layer {l}: row {row}")

    phases = section(md, "Time by phase")
    present = {k[5:-2] for k, v in a.items() if k.startswith("time_") and k.endswith("_s") and float(v) != 0}
    zero = {k[5:-2] for k, v in a.items() if k.startswith("time_") and k.endswith("_s") and float(v) == 0}
    listed = set()
    for line in phases.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3:
            listed.add(cells[1])
    check(f"{what}: phase table lists the non-zero time_*_s ({len(present)}) and no zero one",
          present <= listed and not (zero & listed), f"listed {sorted(listed)}, non-zero {sorted(present)}")
    for k in sorted(present):
        row = next((c for c in ([x.strip() for x in line.strip().strip("|").split("|")]
                                for line in phases.splitlines()) if len(c) >= 3 and c[1] == k), None)
        if row is None or row[2] != f"{float(a['time_' + k + '_s']):.4f}":
            check(f"{what}: phase {k} seconds == attribute", False, f"row {row}")
            break
    else:
        check(f"{what}: every phase row's seconds equal its attribute", True)

    for name in PNGS + (["throughput.png"] if timeline else []):
        check(f"{what}: report.md links {name}", f"]({name})" in md)
    tl = section(md, "Throughput over time")
    if timeline:
        check(f"{what}: report.md names the timeline's source and reads tokens as {timeline}",
              "Timeline from" in tl and f"tokens read as {timeline}" in tl, tl[:200])
    else:
        check(f"{what}: report.md says the file has no timeline", "no timeline" in tl, tl[:200])
        check(f"{what}: no throughput.png without a timeline",
              not os.path.exists(os.path.join(out, "throughput.png")))


def check_run(what, results, tmp, timeline=False):
    out = os.path.join(tmp, what.replace(" ", "_") + "_report")
    rc, so, se = report(results, out)
    if not check(f"{what}: tools/report exits 0", rc == 0, f"rc {rc}, stderr {se.strip()!r}"):
        return
    check_pngs(what, out, PNGS + (["throughput.png"] if timeline else []))
    check_markdown(what, out, results, timeline)


def generate(janus, what, out, mpi=None):
    cmd = [janus, "generate", "--model", MODEL, "--requests", REQUESTS, "--out", out, "--quiet"]
    if mpi:
        cmd = ["mpirun", "--oversubscribe", "--allow-run-as-root", "-np", str(mpi[0]), *cmd,
               "--attn-ranks", str(mpi[1]), "--moe-ranks", str(mpi[2])]
    rc, so, se = run(cmd)
    return check(f"{what}: janus generate exits 0 and writes {os.path.basename(out)}",
                 rc == 0 and os.path.isfile(out), f"rc {rc}, stderr {se.strip()[-400:]!r}")


def with_timeline(src, dst, how):
    """A copy of src with a timeline: 'datasets' adds /progress/time_s + cumulative
    /progress/tokens; 'attr' a JSON "progress" attribute with per-interval tokens."""
    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as f:
        if "progress" in f:  # janus writes its own timeline: replace it
            del f["progress"]
        total = int(f["results/offsets"][-1])
        gen_s = float(f.attrs["generate_s"])
        t = np.linspace(gen_s / 10, gen_s, 10)
        cum = np.round(np.linspace(0, total, 11)[1:]).astype(np.int64)
        if how == "datasets":
            g = f.create_group("progress")
            g.create_dataset("time_s", data=t)
            g.create_dataset("tokens", data=cum)
        else:
            per = np.diff(np.concatenate([[0], cum]))
            f.attrs["progress"] = json.dumps({"time_s": t.tolist(), "tokens": per.tolist()})


def check_real_timeline(what, path):
    """janus writes /progress: times rising, cumulative tokens and requests never
    falling, ending at the run's totals."""
    with h5py.File(path, "r") as f:
        ok = "progress" in f
        if ok:
            t, tok, done = f["progress/time_s"][...], f["progress/tokens"][...], f["progress/requests_done"][...]
            total, n = int(f["results/offsets"][-1]), len(f["results/ids"])
            ok = (len(t) >= 2 and np.all(np.diff(t) > 0) and np.all(np.diff(tok) >= 0) and np.all(np.diff(done) >= 0)
                  and tok[-1] == total and done[-1] == n)
    check(f"{what}: janus wrote a /progress timeline ending at the run's totals", ok)


def bad_inputs(tmp, requests_copy):
    cases = []
    cases.append(("missing file", os.path.join(tmp, "does_not_exist.h5")))
    text = os.path.join(tmp, "not_hdf5.h5")
    with open(text, "w") as f:
        f.write("this is not an HDF5 file\n")
    cases.append(("not an HDF5 file", text))
    cases.append(("a requests file (HDF5, format janus-requests)", requests_copy))
    nores = os.path.join(tmp, "results_without_datasets.h5")
    with h5py.File(nores, "w") as f:
        f.attrs["format"] = "janus-results"
        f.attrs["version"] = np.int64(1)
    cases.append(("format janus-results but no /results", nores))
    plain = os.path.join(tmp, "plain.h5")
    with h5py.File(plain, "w") as f:
        f.create_dataset("x", data=np.arange(3))
    cases.append(("HDF5 without a format attribute", plain))
    for what, path in cases:
        out = os.path.join(tmp, "bad_out_" + os.path.basename(path))
        rc, so, se = report(path, out)
        check(f"bad input ({what}): exit 2", rc == 2, f"rc {rc}, stderr {se.strip()!r}")
        check(f"bad input ({what}): one message naming {os.path.basename(path)}",
              path in se and "Traceback" not in se and len(se.strip().splitlines()) == 1, f"stderr {se.strip()!r}")
        check(f"bad input ({what}): no output directory made", not os.path.exists(out))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: python3 tests/test_report.py JANUS_BINARY")
    janus = os.path.abspath(sys.argv[1])
    if not os.path.exists(janus):
        subprocess.run(["ninja", "-C", os.path.join(ROOT, "build")], check=False)
    if not check(f"janus binary {janus} exists", os.access(janus, os.X_OK)):
        print(f"{passed} passed, {failed} failed")
        sys.exit(1)
    check("tools/report is executable with a python3 shebang",
          os.access(REPORT, os.X_OK) and open(REPORT).readline().strip() == "#!/usr/bin/env python3")
    with tempfile.TemporaryDirectory(prefix="janus_report_") as tmp:
        mono = os.path.join(tmp, "mono.h5")
        disagg = os.path.join(tmp, "disagg.h5")
        if generate(janus, "monolithic", mono):
            check_real_timeline("monolithic", mono)
            check_run("monolithic", mono, tmp, timeline="cumulative")
        if generate(janus, "disaggregated 1+2", disagg, mpi=(3, 1, 2)):
            with h5py.File(disagg, "r") as f:
                xa = {k: float(f.attrs[k]) for k in ("time_handshake_s", "time_payload_wait_s",
                                                     "time_moe_expert_compute_s") if k in f.attrs}
            check("disaggregated 1+2: exchange timing attributes exist and are non-zero",
                  len(xa) == 3 and all(v > 0 for v in xa.values()), f"{xa}")
            check_real_timeline("disaggregated 1+2", disagg)
            check_run("disaggregated 1+2", disagg, tmp, timeline="cumulative")
            for how in ("datasets", "attr"):
                copy = os.path.join(tmp, f"timeline_{how}.h5")
                with_timeline(disagg, copy, how)
                check_run(f"timeline from {how}", copy, tmp,
                          timeline="cumulative" if how == "datasets" else "per interval")
        req = os.path.join(tmp, "requests.h5")
        shutil.copyfile(REQUESTS, req)
        bad_inputs(tmp, req)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
