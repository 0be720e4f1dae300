"""Loader benchmark: memory-mapped Arrow (nh_models.data) vs polars.read_parquet held in memory.

    python bench/loader_throughput.py                       # 100,000 potentials = 400,000 orbits
    python bench/loader_throughput.py --potentials 10000 --batch-size 100,1000

Both sides read the same train shards. Each side runs in its own fresh process (twice:
a warm-up run, then the measured one, so both read from a warm page cache and the Arrow
cache exists) and reports:

- time to first batch: from opening the data to holding the first shuffled batch as
  float32 tensors (imports excluded on both sides);
- private memory: Anonymous (and Private_Dirty) pages from /proc/self/smaps_rollup after
  a full epoch, in total and above the process's size right after its imports; a
  mapped file's clean pages are page cache that the kernel can drop, not private memory;
- shuffled-epoch throughput: samples/s over a full epoch of batches (V, t, q, p, ic) as
  float32 tensors, for each batch size.

The baseline is what the reference code did: `polars.read_parquet`, every column turned
into a float32 torch tensor held in memory, batches by indexing those tensors.

The dataset: `--data DIR` if given; otherwise DIR = parquet_data/bench_loader_<P> is
reused or created, with `nh_data.build.build_dataset` (`--source build`: slow, it
integrates every orbit) or the synthetic writer (`--source synthetic`, the default:
same schema, shard layout as `nh data build`: 1,000 potentials x 4 orbits a shard).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ORBITS_PER_POTENTIAL = 4  # v1.33 (SPEC section 3)
SHARD_POTENTIALS = 1000  # nh data build's default shard size


# ----------------------------------------------------------------- measured in a child process


def _private_kib() -> dict[str, int]:
    fields = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            fields[parts[0].rstrip(":")] = int(parts[1])
    return {"anonymous_kib": fields["Anonymous"], "private_dirty_kib": fields["Private_Dirty"]}


def _child(side: str, data_dir: str, batch_sizes: list[int], threads: int) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from nh_data.schema import read_manifest
    from nh_models.data import EpochBatchSampler, ShardDataset, iterate_batches

    files = [
        str(Path(data_dir) / s["file"]) for s in read_manifest(data_dir)["shards"] if s["split"] == "train"
    ]
    if side == "polars":
        import polars as pl
    base = _private_kib()
    B0 = batch_sizes[0]

    t0 = time.perf_counter()
    if side == "mmap":
        ds = ShardDataset(data_dir, "train")
        n = len(ds)
        sampler = EpochBatchSampler(n, B0, seed=0)
        first = next(iterate_batches(ds, sampler))

        def epoch(B: int) -> int:
            s = EpochBatchSampler(n, B, seed=1)
            seen = 0
            for batch in iterate_batches(ds, s):
                seen += batch["V"].shape[0]
            return seen

    else:
        df = pl.read_parquet(files)
        tensors = {k: torch.from_numpy(df[k].to_numpy().astype(np.float32)) for k in ("V", "t", "q", "p")}
        tensors["ic"] = torch.from_numpy(
            np.stack([df["q0"].to_numpy(), df["p0"].to_numpy()], 1).astype(np.float32)
        )
        del df
        n = tensors["V"].shape[0]
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
        idx = perm[:B0]
        first = {k: v[idx] for k, v in tensors.items()}

        def epoch(B: int) -> int:
            p = torch.randperm(n, generator=torch.Generator().manual_seed(1))
            seen = 0
            for s in range(0, n, B):
                i = p[s : s + B]
                batch = {k: v[i] for k, v in tensors.items()}
                seen += batch["V"].shape[0]
            return seen

    first_batch_s = time.perf_counter() - t0
    assert first["V"].dtype == torch.float32 and first["V"].shape == (B0, 100)
    throughput = {}
    for B in batch_sizes:
        t1 = time.perf_counter()
        seen = epoch(B)
        throughput[str(B)] = seen / (time.perf_counter() - t1)
    after = _private_kib()
    plain = {}
    if side == "polars":  # the machine's ceiling now: a plain np.take of the 5 fields from RAM
        arrays = [v.numpy() for v in tensors.values()]
        for B in batch_sizes:
            p = np.random.default_rng(2).permutation(n)
            t1 = time.perf_counter()
            for s in range(0, n, B):
                for a in arrays:
                    np.take(a, p[s : s + B], axis=0)
            plain[str(B)] = n / (time.perf_counter() - t1)
    return {
        "side": side,
        "rows": n,
        "shards": len(files),
        "first_batch_s": first_batch_s,
        "samples_per_s": throughput,
        "plain_numpy_take_samples_per_s": plain,
        "private_after_epoch": after,
        "private_after_imports": base,
    }


# ----------------------------------------------------------------- driver


def _ensure_dataset(args: argparse.Namespace) -> tuple[Path, str]:
    from nh_data.schema import read_manifest

    if args.data is not None:
        d = Path(args.data)
        read_manifest(d)
        return d, f"given dataset {d}"
    d = REPO / "parquet_data" / f"bench_loader_{args.potentials}"
    rows = args.potentials * ORBITS_PER_POTENTIAL
    synthetic = _synthetic_writer()
    names = (synthetic.GENERATOR, *synthetic.OLD_GENERATORS)
    if (d / "manifest.json").exists():
        m = read_manifest(d)
        if m["config"].get("generator") in names and m["counts"].get("train") == rows:
            return d, f"synthetic dataset (reused) {d}"
        if m["config"].get("generator") not in names:
            return d, f"nh data build dataset (reused) {d}"
    t0 = time.perf_counter()
    if args.source == "build":
        from nh_data.build import build_dataset

        build_dataset(d, args.potentials, seed=0, workers=args.workers, overwrite=True, progress=True)
        what = f"nh data build dataset {d}"
    else:
        synthetic.write_synthetic_dataset(
            d, n_train=rows, n_val=0, n_test=0, seed=0, rows_per_shard=SHARD_POTENTIALS * ORBITS_PER_POTENTIAL
        )
        what = f"synthetic dataset ({synthetic.GENERATOR}, nh_data schema) {d}"
    print(f"wrote {what} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return d, what


def _synthetic_writer():
    """tests/synthetic.py, the test data writer, loaded by its path (it is test scaffolding,
    not part of the library, and this script does not edit sys.path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("synthetic", REPO / "tests" / "synthetic.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_child(side: str, data_dir: Path, batch_sizes: list[int], threads: int) -> dict:
    cmd = [sys.executable, __file__, "--child", side, "--data", str(data_dir), "--threads", str(threads),
           "--batch-size", ",".join(map(str, batch_sizes))]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"{side} run failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--potentials", type=int, default=100_000, help="potentials (4 orbits each)")
    ap.add_argument("--data", default=None, help="use this dataset folder instead")
    ap.add_argument("--source", choices=["synthetic", "build"], default="synthetic")
    ap.add_argument("--workers", type=int, default=2, help="build workers (--source build)")
    ap.add_argument("--batch-size", default="100,1000", help="comma-separated batch sizes")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads in each side")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--child", choices=["mmap", "polars"], default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    batch_sizes = [int(b) for b in args.batch_size.split(",")]
    if args.child is not None:
        print(json.dumps(_child(args.child, args.data, batch_sizes, args.threads)))
        return

    data_dir, what = _ensure_dataset(args)
    from nh_models.data import ShardDataset

    t0 = time.perf_counter()
    ShardDataset(data_dir, "train")  # the Arrow cache (timed once; not part of the warm-cache figures)
    convert_s = time.perf_counter() - t0
    results = {}
    for side in ("mmap", "polars"):  # warm-up runs: page cache, Arrow cache, Numba cache
        _run_child(side, data_dir, batch_sizes[:1], args.threads)
    for side in ("mmap", "polars"):
        results[side] = _run_child(side, data_dir, batch_sizes, args.threads)
    a, b = results["mmap"], results["polars"]

    def mib(kib: int) -> str:
        return f"{kib / 1024:,.0f} MiB"

    print(f"dataset: {what}: {a['rows']:,} train orbits in {a['shards']} shards")
    print(
        f"first open (Parquet -> Arrow IPC cache, if not yet built): {convert_s:.1f} s; threads per side: {args.threads}"
    )
    print(f"{'':34s}{'mmap Arrow':>16s}{'polars in memory':>18s}{'ratio':>10s}")
    fa, fb = a["first_batch_s"], b["first_batch_s"]
    print(f"{'time to first batch (warm)':34s}{fa * 1e3:>13.1f} ms{fb * 1e3:>15.1f} ms{fb / fa:>9.0f}x")
    for key, label in (("anonymous_kib", "Anonymous"), ("private_dirty_kib", "Private_Dirty")):
        pa_, pb_ = a["private_after_epoch"][key], b["private_after_epoch"][key]
        print(f"{'private memory, ' + label:34s}{mib(pa_):>16s}{mib(pb_):>18s}{pa_ / pb_:>10.2f}")
        da = pa_ - a["private_after_imports"][key]
        db = pb_ - b["private_after_imports"][key]
        print(f"{'  above the imports':34s}{mib(da):>16s}{mib(db):>18s}{da / max(db, 1):>10.3f}")
    for B in batch_sizes:
        sa, sb = a["samples_per_s"][str(B)], b["samples_per_s"][str(B)]
        print(f"{f'shuffled epoch, batch {B} (samples/s)':34s}{sa:>16,.0f}{sb:>18,.0f}{sa / sb:>10.2f}")
    for B in batch_sizes:
        plain = b["plain_numpy_take_samples_per_s"][str(B)]
        print(f"  machine now: plain np.take of the 5 fields from RAM, batch {B}: {plain:,.0f} samples/s")
    if args.json:
        Path(args.json).write_text(json.dumps({"dataset": what, "convert_s": convert_s, **results}, indent=2))


if __name__ == "__main__":
    main()
