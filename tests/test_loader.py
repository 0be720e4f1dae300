"""The memory-mapped loader: exact contents, checksum-keyed cache, sampling across ranks, workers."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from synthetic import write_synthetic_dataset

from nh_data.errors import NHError
from nh_data.fileio import sha256_file
from nh_models import data as D
from nh_models.data import EpochBatchSampler, ShardDataset, eval_batches, iterate_batches


def _shard_rows(data_dir: Path, split: str) -> dict[str, np.ndarray]:
    """The split's columns read straight from Parquet (the slow, obvious twin of the loader)."""
    manifest = json.loads((data_dir / "manifest.json").read_text())
    files = [data_dir / s["file"] for s in manifest["shards"] if s["split"] == split]
    table = pa.concat_tables([pq.read_table(f) for f in files])
    out = {k: np.array(table.column(k).to_pylist(), dtype=np.float64) for k in ("V", "t", "q", "p")}
    out["ic"] = np.stack([table.column("q0").to_numpy(), table.column("p0").to_numpy()], axis=1)
    for k in ("E0", "u", "pid"):
        out[k] = table.column(k).to_numpy()
    return out


@pytest.fixture(scope="module")
def multi(tmp_path_factory) -> Path:
    """Three train shards (100, 100, 37 rows), each of several row groups."""
    d = tmp_path_factory.mktemp("multi")
    write_synthetic_dataset(d, n_train=237, n_val=40, n_test=0, seed=5, rows_per_shard=100, row_group_size=30)
    return d


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("single")
    write_synthetic_dataset(d, n_train=64, n_val=16, n_test=16, seed=6)
    return d


# ----------------------------------------------------------------- contents


@pytest.mark.parametrize("fixture", ["multi", "single"])
def test_batches_equal_shard_contents_exactly(fixture, request):
    data_dir = request.getfixturevalue(fixture)
    ref = _shard_rows(data_dir, "train")
    ds64 = ShardDataset(data_dir, "train", dtype=torch.float64)
    ds32 = ShardDataset(data_dir, "train")
    n = len(ref["pid"])
    assert len(ds64) == n
    rng = np.random.default_rng(0)
    for idx in (rng.permutation(n), rng.integers(0, n, 50), np.array([n - 1, 0, n - 1]), np.arange(0)):
        b64, b32 = ds64.get_batch(idx), ds32.get_batch(idx)
        for k in D.BATCH_KEYS:
            expected = torch.from_numpy(ref[k][idx])
            assert b64[k].dtype == torch.float64 and b32[k].dtype == torch.float32
            assert b64[k].is_contiguous() and b32[k].is_contiguous()
            assert torch.equal(b64[k], expected), k
            assert torch.equal(b32[k], expected.float()), k
    assert ds64.get_batch(np.arange(3))["V"].shape == (3, 100)
    assert ds64.get_batch(np.arange(3))["t"].shape == (3, ds64.W)
    assert ds64.get_batch(np.arange(3))["ic"].shape == (3, 2)


def test_columns_are_read_only_views(single, multi):
    ref = _shard_rows(single, "train")
    ds = ShardDataset(single, "train", dtype=torch.float64)
    V = ds.numpy("V")
    assert V.shape == (64, 100) and not V.flags.writeable
    assert np.shares_memory(V, ds.numpy("V"))  # a view of the mapping, not a copy
    assert np.array_equal(V, ref["V"])
    V32 = ShardDataset(single, "train").numpy("V")
    assert V32.dtype == np.float32 and np.array_equal(V32, ref["V"].astype(np.float32))
    for k in ("E0", "u", "pid"):
        assert np.array_equal(ds.column(k), ref[k])
    assert not ds.column("u").flags.writeable
    ref_m = _shard_rows(multi, "train")  # several shards: concatenated
    assert np.array_equal(ShardDataset(multi, "train", dtype=torch.float64).numpy("q"), ref_m["q"])
    with pytest.raises(NHError, match="unknown column 'nope'; valid columns: V, t, q, p"):
        ds.column("nope")
    with pytest.raises(NHError, match="vector column"):
        ds.numpy("u")


def test_batches_are_fresh_writable_copies(single):
    ds = ShardDataset(single, "train", dtype=torch.float64)
    b = ds.get_batch(np.arange(4))
    b["V"].zero_()  # writing to a batch must never reach the mapping
    assert np.array_equal(ds.numpy("V")[:4], _shard_rows(single, "train")["V"][:4])


def test_index_out_of_range(single):
    ds = ShardDataset(single, "train")
    with pytest.raises(IndexError):
        ds.get_batch(np.array([64]))
    with pytest.raises(IndexError):
        ds.get_batch(np.array([-1]))


# ----------------------------------------------------------------- cache keyed by checksum


def test_cache_is_keyed_by_checksum_and_never_stale(tmp_path, monkeypatch):
    d = tmp_path / "data"
    write_synthetic_dataset(d, n_train=40, n_val=8, n_test=0, seed=1)
    shard = d / "train-00000.parquet"
    ds = ShardDataset(d, "train", dtype=torch.float64)
    sha1 = sha256_file(shard)
    assert ds.files[0] == d / ".nh_cache" / f"{sha1}.f64.v{D.CACHE_FORMAT}.arrow"
    assert json.loads((d / "manifest.json").read_text())["shards"][0]["sha256"] == sha1
    # an Arrow IPC file with one record batch; the batch fields in the dataset's dtype
    reader = pa.ipc.open_file(pa.memory_map(str(ds.files[0])))
    assert reader.num_record_batches == 1
    # V | t | q | p | ic packed side by side: a sample is one contiguous row of the mapping
    assert reader.schema.field("packed").type == pa.list_(pa.float64(), 100 + 3 * 100 + 2)
    assert D.field_slices(100) == {
        "V": slice(0, 100), "t": slice(100, 200), "q": slice(200, 300), "p": slice(300, 400), "ic": slice(400, 402)
    }
    assert reader.schema.field("E0").type == pa.float64()
    ds32 = ShardDataset(d, "train")  # float32: its own cache file beside the float64 one
    assert ds32.files[0] == d / ".nh_cache" / f"{sha1}.f32.v{D.CACHE_FORMAT}.arrow"
    assert pa.ipc.open_file(pa.memory_map(str(ds32.files[0]))).schema.field("packed").type == pa.list_(
        pa.float32(), 402
    )

    # a warm open neither converts nor rehashes
    def refuse(*args, **kwargs):
        raise AssertionError("warm open must not convert or hash")

    monkeypatch.setattr(D, "convert_shard", refuse)
    monkeypatch.setattr(D, "sha256_file", refuse)
    ShardDataset(d, "train")
    monkeypatch.undo()

    # the shard changes (dataset rebuilt with another seed): a new cache file, the new contents
    time.sleep(0.05)
    write_synthetic_dataset(d, n_train=40, n_val=8, n_test=0, seed=2)
    sha2 = sha256_file(shard)
    assert sha2 != sha1
    ds2 = ShardDataset(d, "train", dtype=torch.float64)
    assert ds2.files[0].name.startswith(sha2)
    assert not ds.files[0].exists() and not ds32.files[0].exists()  # the stale cache files were removed
    assert np.array_equal(ds2.get_batch(np.arange(40))["q"].numpy(), _shard_rows(d, "train")["q"])


def test_damaged_cache_file_is_rebuilt(tmp_path):
    d = tmp_path / "data"
    write_synthetic_dataset(d, n_train=30, n_val=6, n_test=0, seed=3)
    path = ShardDataset(d, "train").files[0]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated
    ds = ShardDataset(d, "train", dtype=torch.float32)
    assert ds.files[0] == path and path.stat().st_size > 0
    ref = _shard_rows(d, "train")
    assert torch.equal(ds.get_batch(np.arange(30))["t"], torch.from_numpy(ref["t"]).float())


def test_in_place_edit_with_restored_mtime_is_detected(tmp_path):
    """Same size, same mtime: the ctime in the fingerprint still forces a rehash."""
    d = tmp_path / "data"
    write_synthetic_dataset(d, n_train=30, n_val=6, n_test=0, seed=3)
    shard = d / "train-00000.parquet"
    ShardDataset(d, "train")
    other = tmp_path / "other"
    write_synthetic_dataset(other, n_train=30, n_val=6, n_test=0, seed=4)
    new_bytes = (other / "train-00000.parquet").read_bytes()
    st = shard.stat()
    if len(new_bytes) != st.st_size:  # keep the size: pad or cut (the file need not stay readable)
        new_bytes = (new_bytes + b"\0" * st.st_size)[: st.st_size]
    time.sleep(0.05)
    with open(shard, "r+b") as f:
        f.write(new_bytes)
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert shard.stat().st_mtime_ns == st.st_mtime_ns and shard.stat().st_size == st.st_size
    assert D.shard_checksum(shard, d / ".nh_cache") == sha256_file(shard)


def test_shard_that_disagrees_with_manifest_is_refused(tmp_path):
    d = tmp_path / "data"
    write_synthetic_dataset(d, n_train=20, n_val=5, n_test=0, seed=1)
    manifest = json.loads((d / "manifest.json").read_text())
    write_synthetic_dataset(tmp_path / "x", n_train=20, n_val=5, n_test=0, seed=9)
    time.sleep(0.05)
    (d / "train-00000.parquet").write_bytes((tmp_path / "x" / "train-00000.parquet").read_bytes())
    (d / "manifest.json").write_text(json.dumps(manifest))  # the old checksums
    with pytest.raises(NHError, match=r"does not match the sha256 in manifest\.json"):
        ShardDataset(d, "train")


def test_bad_directories(tmp_path, single):
    with pytest.raises(NHError, match="does not exist"):
        ShardDataset(tmp_path / "missing", "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NHError, match="holds no dataset"):
        ShardDataset(tmp_path / "empty", "train")
    with pytest.raises(NHError, match="no 'nope' shards .* splits present: test, train, val"):
        ShardDataset(single, "nope")
    partial = tmp_path / "partial"  # shards but no manifest and no build state: not a dataset
    write_synthetic_dataset(partial, n_train=5, n_val=0, n_test=0)
    (partial / "manifest.json").unlink()
    with pytest.raises(NHError, match="partial is not a dataset of `nh data build`"):
        ShardDataset(partial, "train")
    (partial / ".nh_build").mkdir()  # ... with a build's state folder: an unfinished build
    with pytest.raises(NHError, match="manifest.json: missing: the build is not finished"):
        ShardDataset(partial, "train")


# ----------------------------------------------------------------- sampling


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 300),
    per_rank=st.integers(1, 17),
    world=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
    drop_last=st.booleans(),
)
def test_ranks_are_disjoint_equal_and_union_is_the_single_process_batch(n, per_rank, world, seed, drop_last):
    B = per_rank * world
    if n < world or (drop_last and (n - n % world) < B):
        with pytest.raises(NHError):
            EpochBatchSampler(n, B, seed=seed, world_size=world, drop_last=drop_last)
        return
    samplers = [
        EpochBatchSampler(n, B, seed=seed, rank=r, world_size=world, drop_last=drop_last)
        for r in range(world)
    ]
    single = EpochBatchSampler(n, B, seed=seed, drop_last=drop_last)
    for epoch in (0, 3):
        for s in samplers:
            s.set_epoch(epoch)
        per = [list(s) for s in samplers]
        assert len({len(p) for p in per}) == 1  # same number of batches on every rank
        for step in range(len(per[0])):
            sizes = {len(p[step]) for p in per}
            assert len(sizes) == 1  # same batch size on every rank at every step
        flat = [np.concatenate(p) if p else np.array([], int) for p in per]
        allidx = np.concatenate(flat)
        assert len(allidx) == len(set(allidx.tolist()))  # disjoint, no repeats
        assert len(allidx) == world * samplers[0].samples_per_epoch()
        assert set(allidx.tolist()) <= set(range(n))
        if not drop_last:
            assert len(allidx) == n - n % world
        # the ranks' batches at one step together are one global batch of the permutation
        perm = D.epoch_permutation(n, seed, epoch)
        for step in range(len(per[0])):
            joined = np.concatenate([p[step] for p in per])
            assert np.array_equal(joined, perm[step * B : step * B + len(joined)])
        if n % world == 0:  # exactly the batches a single process gets
            single.set_epoch(epoch)
            joined = [np.concatenate(x) for x in zip(*per, strict=True)]
            assert all(np.array_equal(a, b) for a, b in zip(single, joined, strict=True))


def test_reshuffles_every_epoch_deterministically():
    s = EpochBatchSampler(1000, 100, seed=89)
    s.set_epoch(0)
    e0 = np.concatenate(list(s))
    s.set_epoch(1)
    e1 = np.concatenate(list(s))
    assert sorted(e0.tolist()) == sorted(e1.tolist()) == list(range(1000))
    assert not np.array_equal(e0, e1)
    t = EpochBatchSampler(1000, 100, seed=89)
    t.set_epoch(1)
    assert np.array_equal(np.concatenate(list(t)), e1)  # a function of (seed, epoch) only
    u = EpochBatchSampler(1000, 100, seed=90)
    u.set_epoch(1)
    assert not np.array_equal(np.concatenate(list(u)), e1)


def test_batch_size_must_split_over_ranks():
    with pytest.raises(NHError, match="multiple of the number of processes 2"):
        EpochBatchSampler(100, 5, world_size=2)


@pytest.mark.parametrize("n,world", [(10, 3), (7, 2), (5, 5), (100, 1)])
def test_eval_batches_cover_every_sample_once(n, world):
    parts = [np.concatenate(eval_batches(n, 3, r, world) or [np.array([], int)]) for r in range(world)]
    assert np.array_equal(np.concatenate(parts), np.arange(n))


# ----------------------------------------------------------------- workers and pickling


def test_blocks_and_dataloader_workers_give_the_same_batches(multi):
    ds = ShardDataset(multi, "train")
    sampler = EpochBatchSampler(len(ds), 32, seed=3)
    sampler.set_epoch(2)
    direct = [ds.get_batch(idx) for idx in sampler]
    for kwargs in (
        {},
        {"block_rows": 50},
        {"block_rows": 1},
        {"num_workers": 2},
        {"num_workers": 2, "block_rows": 64},
    ):
        batches = list(iterate_batches(ds, sampler, **kwargs))
        assert len(batches) == len(direct) == len(sampler)
        for a, b in zip(direct, batches, strict=True):
            for k in D.BATCH_KEYS:
                assert torch.equal(a[k], b[k]) and b[k].is_contiguous()


def test_pickled_dataset_reopens_its_mappings(multi):
    ds = ShardDataset(multi, "train")
    blob = pickle.dumps(ds)
    assert len(blob) < 10_000  # the mapped arrays are not in the pickle
    clone = pickle.loads(blob)
    idx = np.array([5, 150, 236, 0])
    assert torch.equal(clone.get_batch(idx)["p"], ds.get_batch(idx)["p"])


# ----------------------------------------------------------------- memory


_MEMORY_PROBE = """
import sys
from pathlib import Path
import torch
from nh_models.data import EpochBatchSampler, ShardDataset, iterate_batches

def anonymous_kib():
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Anonymous:"):
            return int(line.split()[1])

out = []
for data_dir in sys.argv[1:]:
    ds = ShardDataset(data_dir, "train", dtype=torch.float64)
    sampler = EpochBatchSampler(len(ds), 500, seed=0)
    total = 0.0
    for epoch in range(2):
        sampler.set_epoch(epoch)
        for batch in iterate_batches(ds, sampler, block_rows=1000):
            total += float(batch["q"].sum())
    assert total == total
    out += [anonymous_kib(), ds.numpy("V").nbytes * 4 // 1024]
print(*out)
"""


def test_private_memory_does_not_grow_with_the_data(tmp_path):
    """Private memory (anonymous pages from /proc/self/smaps_rollup, not RSS: the mapped file's
    pages are page cache) after two epochs over 36,000 orbits is about what it was after two
    epochs over 3,000 in the same fresh process (blocks of 1,000 rows: transient buffers of a
    few MB, whatever the data size)."""
    dirs = []
    for n in (3_000, 36_000):
        dirs.append(tmp_path / f"n{n}")
        write_synthetic_dataset(dirs[-1], n_train=n, n_val=10, n_test=0, seed=0)
        ShardDataset(dirs[-1], "train", dtype=torch.float64)  # build the cache outside the probe
    repo = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, *map(str, dirs)],
        cwd=repo,
        env=dict(os.environ, PYTHONPATH=str(repo), OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    small, small_data, big, big_data = map(int, proc.stdout.split())
    assert big_data - small_data > 100_000  # 100 MiB more data ...
    assert big - small < (big_data - small_data) // 5, (small, big, small_data, big_data)  # ... not in memory


# ----------------------------------------------------------------- the synthetic dataset


def test_synthetic_orbits_are_exact_hamiltonian_flows(single):
    """H(q, p) = p^2/2 + V(q) is constant along every orbit, and V is the stored B-spline."""
    from scipy.interpolate import BSpline

    from nh_data.schema import SCHEMA

    table = pq.read_table(single / "train-00000.parquet")
    assert table.schema.equals(SCHEMA)
    ds = ShardDataset(single, "train", dtype=torch.float64)
    V, t, q, p = (ds.numpy(k) for k in ("V", "t", "q", "p"))
    knots, coeffs = ds.column("knots"), ds.column("coeffs")
    x = np.linspace(0, 1, 100)
    for i in range(len(ds)):
        spline = BSpline(knots[i], coeffs[i], 3)
        assert np.allclose(spline(x), V[i], atol=1e-12, rtol=0)
        H = 0.5 * p[i] ** 2 + spline(q[i])
        assert np.allclose(H, ds.column("E0")[i], atol=1e-12, rtol=0)
        # dq/dt = p and dp/dt = -V'(q): trapezoidal differences between the sorted output times
        dt = np.diff(t[i])
        ok = (dt > 1e-4) & (dt < 0.02)  # trapezoid error <= dt^2 A omega^3 / 12 < 5e-3
        dV = spline.derivative()(q[i])
        assert np.allclose(np.diff(q[i])[ok] / dt[ok], 0.5 * (p[i][1:] + p[i][:-1])[ok], atol=0.01)
        assert np.allclose(np.diff(p[i])[ok] / dt[ok], -0.5 * (dV[1:] + dV[:-1])[ok], atol=0.06)
    assert t[:, 0].max() == 0.0 and t[:, -1].min() == 2.0 and np.all(np.diff(t, axis=1) >= 0)
    assert 0 < q.min() and q.max() < 1 and V[:, [0, -1]].max(axis=1) == pytest.approx(2.0)
    u = ds.column("u")
    assert np.all((u >= 0) & (u <= 1))


def test_synthetic_dataset_is_deterministic(tmp_path):
    a = write_synthetic_dataset(tmp_path / "a", n_train=20, n_val=5, n_test=5, seed=3)
    b = write_synthetic_dataset(tmp_path / "b", n_train=20, n_val=5, n_test=5, seed=3)
    assert [s["sha256"] for s in a["shards"]] == [s["sha256"] for s in b["shards"]]
    with pytest.raises(NHError, match="n_train >= 1"):
        write_synthetic_dataset(tmp_path / "c", n_train=0)
