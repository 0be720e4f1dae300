"""Data-engine throughput, side by side on the same potentials (docs/benchmarks.md, "Data engine").

Prints:
1. certified orbits per second per core of the engine (knot-aware DOP853, two runs + certificate);
2. SciPy ``solve_ivp(method="DOP853", rtol=1e-10, atol=1e-12)`` with a SciPy BSpline force, what a
   Python user would write (one run, not certified), its rate and its worst error;
3. a plain NumPy implementation of the same adaptive pair and the same two-run certificate,
   vectorised over the batch (per-orbit step sizes, masks), without the knot stops;
4. end-to-end build rate with 1 and 2 worker processes (scaling);
5. wall time of ``nh data build --preset normal --workers 2`` (all three splits);
6. peak RSS of builds at two sizes (N = 10,000 vs 100,000; --quick: 2,000 vs 20,000),
   read from /proc (VmHWM of the build process) and getrusage (largest worker);
7. the Dask row: the same build (n = 40,000; --quick: 2,000) by the process pool with
   ``--workers 2`` and by ``--scheduler local:2`` (a LocalCluster of 2 worker processes),
   side by side, --repeats pairs back to back (order alternating; --quick: one), with Dask's
   overhead in % of the medians and of each pair (needs the [cluster] extra).

Run: ``PYTHONPATH=. python bench/data_throughput.py [--quick]``; the Dask row alone:
``PYTHONPATH=. python bench/data_throughput.py --dask-only [--n 40000] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from nh_data.adaptive import DOP853
from nh_data.ground_truth import ADAPTIVE_TOLS, certified_orbits
from nh_data.initial import sample_initial, sample_times
from nh_data.random_potentials import V0, sample_potentials

REPO = Path(__file__).resolve().parents[1]


def workload(n_pot: int, seed: int = 2024):
    rng = np.random.default_rng(seed)
    pots = sample_potentials(rng, n_pot)
    orb = sample_initial(rng, pots.params, "strata")
    t = sample_times(rng, orb.q0.shape[0], "random")
    return pots, orb, t


# ---------------------------------------------------------------- SciPy, as a Python user writes it


def scipy_orbits(pots, orb, t, idx):
    import scipy.interpolate as si
    from scipy.integrate import solve_ivp

    out = []
    for r in idx:
        i = orb.pot[r]
        dV = si.BSpline(pots.knots[i], pots.coeffs[i], 3).derivative()
        sol = solve_ivp(
            lambda _t, y, dV=dV: [y[1], -float(dV(y[0]))],
            (0.0, 2.0),
            [orb.q0[r], orb.p0[r]],
            method="DOP853",
            rtol=1e-10,
            atol=1e-12,
            t_eval=t[r],
        )
        out.append(sol.y)
    return out


# ---------------------------------------------------------------- NumPy, vectorised over the batch


def numpy_dV(q, params):
    """Vectorised spline force: q (B,), params (B, P) packed rows -> (B,)."""
    n = params[:, 0].astype(np.int64)
    B = q.shape[0]
    rows = np.arange(B)
    # piece index: number of interior breakpoints <= q (at most 6 pieces)
    k = np.zeros(B, dtype=np.int64)
    for j in range(1, 7):
        has = j < n
        br = params[rows, np.minimum(1 + j, params.shape[1] - 1)]
        k += has & (q >= br)
    s = q - params[rows, 1 + k]
    base = 2 + n + 4 * k
    a1, a2, a3 = params[rows, base + 1], params[rows, base + 2], params[rows, base + 3]
    return (3.0 * a3 * s + 2.0 * a2) * s + a1


def numpy_dop853(params, q0, p0, t_out, tol):
    """DOP853 with SciPy's controller, all orbits stepping together; lands on output times."""
    A, Bw, E5, E3 = DOP853.a, DOP853.b, DOP853.e5, DOP853.e3  # autonomous: c unused
    s = Bw.shape[0]
    R, W = t_out.shape
    q, p = q0.copy(), p0.copy()
    qo, po = np.empty((R, W)), np.empty((R, W))
    qo[:, 0], po[:, 0] = q, p
    t = t_out[:, 0].copy()
    nxt = np.ones(R, dtype=np.int64)
    h = np.full(R, 1e-3)
    fq, fp = p.copy(), -numpy_dV(q, params)
    kq, kp = np.empty((s + 1, R)), np.empty((s + 1, R))
    active = nxt < W
    while active.any():
        ia = np.flatnonzero(active)
        tt = t_out[ia, nxt[ia]]
        clipped = t[ia] + 1.01 * h[ia] >= tt
        hh = np.where(clipped, tt - t[ia], h[ia])
        qa, pa, pr = q[ia], p[ia], params[ia]
        kq[0, : ia.size], kp[0, : ia.size] = fq[ia], fp[ia]
        for st in range(1, s):
            dq = A[st, :st] @ kq[:st, : ia.size]
            dp = A[st, :st] @ kp[:st, : ia.size]
            kq[st, : ia.size] = pa + hh * dp
            kp[st, : ia.size] = -numpy_dV(qa + hh * dq, pr)
        qn = qa + hh * (Bw @ kq[:s, : ia.size])
        pn = pa + hh * (Bw @ kp[:s, : ia.size])
        kq[s, : ia.size], kp[s, : ia.size] = pn, -numpy_dV(qn, pr)
        sq = tol + tol * np.maximum(np.abs(qa), np.abs(qn))
        sp = tol + tol * np.maximum(np.abs(pa), np.abs(pn))
        e5 = ((E5 @ kq[:, : ia.size]) / sq) ** 2 + ((E5 @ kp[:, : ia.size]) / sp) ** 2
        e3 = ((E3 @ kq[:, : ia.size]) / sq) ** 2 + ((E3 @ kp[:, : ia.size]) / sp) ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            err = np.where(e5 + e3 > 0, np.abs(hh) * e5 / np.sqrt((e5 + 0.01 * e3) * 2.0), 0.0)
            fac = np.where(err > 0, 0.9 * err ** (-1.0 / 8.0), 10.0)
        ok = err < 1.0
        h_new = hh * np.where(ok, np.minimum(10.0, fac), np.maximum(0.2, fac))
        h[ia] = np.where(ok & clipped, np.maximum(h_new, h[ia]), h_new)
        acc = ia[ok]
        t[acc] = np.where(clipped[ok], tt[ok], t[acc] + hh[ok])
        q[acc], p[acc] = qn[ok], pn[ok]
        fq[acc], fp[acc] = kq[s, : ia.size][ok], kp[s, : ia.size][ok]
        land = acc[clipped[ok]]
        qo[land, nxt[land]] = q[land]
        po[land, nxt[land]] = p[land]
        nxt[land] += 1
        active = nxt < W
    return qo, po


def numpy_certified(pots, orb, t):
    params = pots.params[orb.pot]
    qa, pa = numpy_dop853(params, orb.q0, orb.p0, t, ADAPTIVE_TOLS[0])
    qb, pb = numpy_dop853(params, orb.q0, orb.p0, t, ADAPTIVE_TOLS[1])
    err = np.maximum(np.abs(qa - qb).max(1), np.abs(pa - pb).max(1))
    return qb, pb, err


# ---------------------------------------------------------------- where the time goes


def breakdown(quick: bool) -> None:
    """Time the phases of one shard in this process: what limits the end-to-end rate."""
    import pyarrow.parquet as pq

    from nh_data import build as nb
    from nh_data.fileio import sha256_file
    from nh_data.schema import ROW_GROUP_SIZE, SCHEMA, WRITE_OPTIONS

    cfg = nb.resolve_config(10_000, seed=1)
    spec = nb.ShardSpec("train", 0, 0, 250 if quick else 1000, 0)
    nb.compute_shard(cfg, nb.ShardSpec("train", 1, 0, 2, 0))  # warm
    table, info = nb.compute_shard(cfg, spec)
    s = info["seconds"]
    ph = {
        "potentials: GRF + B-spline set-up + sensors": s["potentials"],
        "initial conditions + times": s["initial"],
        "integration + certificate": s["integration"],
        "Arrow table assembly": s["table"],
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.parquet"
        t0 = time.perf_counter()
        with pq.ParquetWriter(path, SCHEMA, **WRITE_OPTIONS) as w:
            w.write_table(table, row_group_size=ROW_GROUP_SIZE)
        ph["Parquet zstd write"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        sha256_file(path)
        pq.read_metadata(path)
        ph["sha256 + verify"] = time.perf_counter() - t0
        size = path.stat().st_size
    total = sum(ph.values())
    print(f"one shard of {spec.count} potentials ({table.num_rows} rows, {size / 1e6:.1f} MB): {total:.2f} s")
    for k, v in ph.items():
        print(f"  {k:<46s} {v:6.3f} s  {100 * v / total:5.1f} %")


# ---------------------------------------------------------------- what the machine itself offers


def _burn(n: int) -> float:
    s = 0
    for i in range(n):
        s += i * i
    return float(s)


def machine_scaling(n: int = 10_000_000) -> float:
    """Throughput ratio of 2 processes vs 1 on a pure-Python CPU burn: the control for worker scaling."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    t0 = time.perf_counter()
    _burn(n)
    one = time.perf_counter() - t0
    with ProcessPoolExecutor(2, mp_context=get_context("fork")) as pool:
        list(pool.map(_burn, [1000, 1000]))  # start the workers first
        t0 = time.perf_counter()
        list(pool.map(_burn, [n, n]))
        two = time.perf_counter() - t0
    return 2 * one / two


# ---------------------------------------------------------------- builds in subprocesses


def timed_build(n: int, workers: int, out: Path, extra: list[str] | None = None) -> dict:
    """Run `nh data build` in a fresh process; wall time and peak RSS (MiB) of the build and its workers."""
    code = (
        "import json, resource, sys, time\n"
        "sys.argv = ['nh'] + sys.argv[1:]\n"
        "import cli\n"
        "t0 = time.perf_counter()\n"
        "try:\n"
        "    cli.nh.main(args=sys.argv[1:], prog_name='nh', standalone_mode=False)\n"
        "finally:\n"
        "    wall = time.perf_counter() - t0\n"
        "    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "    cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime\n"
        "    print(json.dumps({'wall': wall, 'cpu': cpu, 'rss_main_mib': int(hwm) / 1024,\n"
        "                      'rss_worker_mib': kids.ru_maxrss / 1024}))\n"
    )
    args = ["data", "build", "--n", str(n), "--workers", str(workers), "--out", str(out), "--quiet"]
    args += extra or []
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))  # fmt: skip
    total = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res["wall_with_startup"] = total
    return res


def dask_row(n: int, repeats: int = 1) -> None:
    """Process pool (--workers 2) against a LocalCluster of 2 worker processes: same build,
    `repeats` pairs run back to back (the order alternating), the overhead of the medians."""
    k = "1000" if n >= 10_000 else "100"
    walls: dict[str, list[float]] = {"pool": [], "dask": []}
    same = True
    for r in range(repeats):
        with tempfile.TemporaryDirectory(dir=REPO / "parquet_data") as tmp:
            tmp = Path(tmp)
            for kind in ("pool", "dask") if r % 2 == 0 else ("dask", "pool"):
                extra = ["--shard-size", k] + (["--scheduler", "local:2"] if kind == "dask" else [])
                walls[kind].append(timed_build(n, 2 if kind == "pool" else 1, tmp / kind, extra)["wall"])
            same &= (tmp / "pool" / "manifest.json").read_bytes() == (tmp / "dask" / "manifest.json").read_bytes()
    pool, dask = (float(np.median(walls[kind])) for kind in ("pool", "dask"))
    overhead = 100 * (dask / pool - 1)
    pairs = ", ".join(f"{100 * (d / p - 1):+.1f} %" for p, d in zip(walls["pool"], walls["dask"], strict=True))
    print(f"build n={n:,} ({4 * n:,} orbits, shards of {k} potentials), 2 workers, {repeats} pair(s): "
          f"process pool {pool:.2f} s | Dask LocalCluster {dask:.2f} s (medians; cluster start-up included) "
          f"-> Dask overhead {overhead:+.1f} % (pairs: {pairs}); identical bytes: {same}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller run (about a minute)")
    ap.add_argument("--dask-only", action="store_true", help="only the Dask row (7.)")
    ap.add_argument("--n", type=int, default=None, help="potentials of the Dask row [40,000; --quick: 2,000]")
    ap.add_argument("--repeats", type=int, default=5, help="pairs of builds in the Dask row (medians) [5]")
    args = ap.parse_args()
    quick = args.quick
    n_dask = args.n if args.n is not None else (2000 if quick else 40_000)
    if args.dask_only:
        dask_row(n_dask, args.repeats)
        return
    n_pot = 100 if quick else 500
    n_scipy = 12 if quick else 40

    pots, orb, t = workload(n_pot)
    R = orb.q0.shape[0]
    escale = V0 - pots.V.min(axis=1)
    certified_orbits(pots.params[:1], orb.pot[:1], orb.q0[:1], orb.p0[:1], t[:1], orb.E0[:1], escale)  # warm
    t0, c0 = time.perf_counter(), time.process_time()
    eng = certified_orbits(pots.params, orb.pot, orb.q0, orb.p0, t, orb.E0, escale)
    t_eng, c_eng = time.perf_counter() - t0, time.process_time() - c0
    kept = int((eng["code"] == 0).sum())
    rate_eng = kept / c_eng  # per CPU-second = per core, robust to other jobs on the machine
    print(f"workload: {n_pot} potentials x 4 strata orbits = {R} orbits, 100 random times on [0, 2]")
    print(f"engine (dop853 knot-aware, certified): {rate_eng:,.0f} certified orbits per CPU-second "
          f"({kept / t_eng:,.0f}/s wall); "
          f"{np.median(eng['nfev']):.0f} force evaluations/orbit (median, both runs); "
          f"{R - kept} rejected; max err_est {eng['err_est'][eng['code'] == 0].max():.2g}")  # fmt: skip

    idx = np.linspace(0, R - 1, n_scipy).astype(int)
    t0, c0 = time.perf_counter(), time.process_time()
    sp = scipy_orbits(pots, orb, t, idx)
    t_sp, c_sp = time.perf_counter() - t0, time.process_time() - c0
    rate_sp = len(idx) / c_sp
    sp_err = max(
        max(np.abs(y[0] - eng["q"][r]).max(), np.abs(y[1] - eng["p"][r]).max())
        for y, r in zip(sp, idx, strict=True)
    )
    print(f"scipy solve_ivp DOP853 rtol=1e-10 atol=1e-12 (one run, not certified): {rate_sp:,.1f} orbits per CPU-second "
          f"({len(idx) / t_sp:,.1f}/s wall); "
          f"worst error vs certified {sp_err:.2g} on {len(idx)} orbits")  # fmt: skip
    print(f"  engine / scipy: {rate_eng / rate_sp:,.0f}x per core")
    print(f"  machine load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    breakdown(quick)

    n_np = R if not quick else min(R, 200)
    sel = np.arange(n_np)
    from types import SimpleNamespace

    sub = SimpleNamespace(q0=orb.q0[sel], p0=orb.p0[sel], pot=orb.pot[sel])
    t0, c0 = time.perf_counter(), time.process_time()
    qb, pb, err_np = numpy_certified(pots, sub, t[sel])
    t_np, c_np = time.perf_counter() - t0, time.process_time() - c0
    rate_np = n_np / c_np
    np_err = max(np.abs(qb - eng["q"][sel]).max(), np.abs(pb - eng["p"][sel]).max())
    print(f"numpy batch-vectorised DOP853, same two-run certificate, no knot stops: {rate_np:,.0f} orbits per CPU-second "
          f"({n_np / t_np:,.0f}/s wall); "
          f"{int((err_np > 1e-8).sum())}/{n_np} would fail the certificate; worst error vs engine {np_err:.2g}")  # fmt: skip
    print(f"  engine / numpy: {rate_eng / rate_np:,.1f}x")

    with tempfile.TemporaryDirectory(dir=REPO / "parquet_data") as tmp:
        tmp = Path(tmp)
        # large enough that the fixed start-up (imports, Numba cache, ~1 s) does not dominate
        n_scale, k = (2000, "100") if quick else (40000, "1000")
        control_before = machine_scaling()
        w1 = timed_build(n_scale, 1, tmp / "w1", ["--shard-size", k])
        w2 = timed_build(n_scale, 2, tmp / "w2", ["--shard-size", k])
        control = 0.5 * (control_before + machine_scaling())
        same = sorted((tmp / "w1").glob("*.parquet")) and all(
            (tmp / "w1" / f.name).read_bytes() == (tmp / "w2" / f.name).read_bytes()
            for f in (tmp / "w1").glob("*.parquet")
        )
        print(f"build n={n_scale} ({4 * n_scale} orbits, shards of {k} potentials): 1 worker {w1['wall']:.2f} s, 2 workers {w2['wall']:.2f} s "
              f"-> scaling {w1['wall'] / w2['wall']:.2f}x; identical bytes: {bool(same)}")  # fmt: skip
        print(
            f"  control: a pure CPU burn scales {control:.2f}x from 1 to 2 processes on this machine right now"
        )
        print(f"  CPU time: 1 worker {w1['cpu']:.2f} s, 2 workers {w2['cpu']:.2f} s; end-to-end "
              f"{4 * n_scale / w1['cpu']:,.0f} orbits per CPU-second (integration alone: {rate_eng:,.0f})")  # fmt: skip
        if not quick:
            normal = timed_build(10_000, 2, tmp / "normal")
            print(f"--preset normal (10,000 potentials, 40,000 orbits, 3 splits), 2 workers: {normal['wall']:.1f} s "
                  f"({normal['wall_with_startup']:.1f} s with interpreter start; {normal['cpu']:.1f} CPU-s)")  # fmt: skip
        small, big = (2_000, 20_000) if quick else (10_000, 100_000)
        rs = timed_build(small, 2, tmp / "small")
        rb = timed_build(big, 2, tmp / "big")
        print(f"peak RSS N={small:,}: main {rs['rss_main_mib']:.0f} MiB, largest worker {rs['rss_worker_mib']:.0f} MiB; "
              f"N={big:,}: main {rb['rss_main_mib']:.0f} MiB, largest worker {rb['rss_worker_mib']:.0f} MiB "
              f"(ratio {max(rb['rss_main_mib'], rb['rss_worker_mib']) / max(rs['rss_main_mib'], rs['rss_worker_mib']):.2f}); "
              f"N={big:,} took {rb['wall']:.1f} s")  # fmt: skip
    dask_row(n_dask, 1 if quick else args.repeats)


if __name__ == "__main__":
    main()
