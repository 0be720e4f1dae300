"""Fresh data (`nh_data.stream`, `nh_models.fresh`): deterministic chunks, certified like a build,
disjoint from the dataset's shards, identical for any number of DataLoader workers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.interpolate as si
import torch

from nh_data.build import resolve_config, sample_rows
from nh_data.errors import NHError
from nh_data.integrators import integrate
from nh_data.schema import SCHEMA, read_manifest
from nh_data.spline import dV_pp, pack_params
from nh_data.stream import FRESH_SPLIT_CODE, fresh_chunk, fresh_rng, read_build_config
from nh_data.validate import REF_DT, REF_MARGIN, REF_METHOD, SENSORS, _check_rows, read_shard
from nh_models.data import BATCH_KEYS, ShardDataset
from nh_models.fresh import FreshOrbits, iterate_chunks

pytestmark = pytest.mark.usefixtures("torch_one_thread")

REPO = Path(__file__).resolve().parents[1]
POTS = 6  # potentials per chunk: 24 strata orbits, milliseconds


@pytest.fixture(scope="module")
def config(tiny_dataset):
    return read_build_config(tiny_dataset)


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        all(np.array_equal(x, y) for x, y in zip(a[k], b[k], strict=True))
        if isinstance(a[k], list)
        else np.array_equal(a[k], b[k])
        for k in a
    )


def test_read_build_config_is_the_manifest_config(tiny_dataset, config):
    assert config == read_manifest(tiny_dataset)["config"]
    assert FreshOrbits.from_folder(tiny_dataset, 1, POTS).config == config


def test_chunk_is_a_pure_function_of_config_seed_index(config):
    a = fresh_chunk(config, 5, 3, POTS)
    assert list(a) == SCHEMA.names  # every column of a shard, in schema order
    assert same(a, fresh_chunk(config, 5, 3, POTS))
    for other in (fresh_chunk(config, 5, 4, POTS), fresh_chunk(config, 6, 3, POTS)):
        assert not np.array_equal(other["V"][:1], a["V"][:1])
        assert not np.isin(other["q0"], a["q0"]).any()
    assert np.array_equal(a["pid"] // POTS, np.full(len(a["pid"]), 3))  # pid = index * potentials + j
    # the stream's generator is the documented one
    r = np.random.Generator(np.random.PCG64(np.random.SeedSequence(5, spawn_key=(FRESH_SPLIT_CODE, 3))))
    assert r.random() == fresh_rng(5, 3).random()


def test_fresh_orbits_pass_the_build_certificate(config):
    d = fresh_chunk(config, 11, 0, POTS)
    R = len(d["q0"])
    assert R == 4 * POTS  # strata: 4 orbits per potential (none rejected on these)
    problems: list[str] = []
    _check_rows("fresh", d, config, problems)  # the row checks of `nh data validate`
    assert problems == []
    assert np.all(d["err_est"] <= config["cert_tol"])
    tol = config["cert_tol"] + REF_MARGIN
    for i in range(0, R, 5):  # independent re-integration: SciPy's spline, Kahan-Li 8 at dt = 2e-5
        spl = si.BSpline(d["knots"][i], d["coeffs"][i], 3)
        assert np.abs(spl(SENSORS) - d["V"][i]).max() < 1e-12
        q, p = integrate(dV_pp, pack_params(d["knots"][i], d["coeffs"][i]), d["q0"][i], d["p0"][i],
                         d["t"][i], REF_DT, REF_METHOD)  # fmt: skip
        assert max(np.abs(q - d["q"][i]).max(), np.abs(p - d["p"][i]).max()) <= tol
        H = 0.5 * d["p"][i] ** 2 + spl(d["q"][i])
        assert np.abs(H - d["E0"][i]).max() < 1e-9
        assert d["q"][i, 0] == d["q0"][i] and d["p"][i, 0] == d["p0"][i]


def test_wall_starts_and_uniform_times():
    cfg = resolve_config(4, ic="wall", times="uniform")
    d = fresh_chunk(cfg, 2, 0, POTS)
    assert 0 < len(d["q0"]) <= POTS  # one orbit per potential
    assert np.all(d["q0"] == 0) and np.all(d["p0"] == 0) and np.all(d["E0"] == cfg["V0"])
    assert np.all(d["t"] == np.linspace(0, 2, 100)) and np.all(d["err_est"] <= 1e-8)
    problems: list[str] = []
    _check_rows("fresh", d, cfg, problems)
    assert problems == []


def test_items_are_batches_like_shard_dataset(tiny_dataset, config, tmp_path):
    ref = ShardDataset(tiny_dataset, "train", cache_dir=tmp_path)[np.arange(2)]
    for dtype in (torch.float32, torch.float64):
        ds = FreshOrbits(config, 1, POTS, dtype)
        assert len(ds) == 2**31 - 1
        b = ds[7]
        assert tuple(b) == BATCH_KEYS == tuple(ref)
        n = 4 * POTS
        shapes = {"V": (n, 100), "t": (n, 100), "q": (n, 100), "p": (n, 100), "ic": (n, 2)}
        for k, v in b.items():
            assert v.shape == shapes[k] and v.dtype == dtype and v.is_contiguous()
        a = ds.arrays(7)
        assert torch.equal(b["ic"], torch.from_numpy(np.stack([a["q0"], a["p0"]], 1)).to(dtype))
        assert torch.equal(b["q"], torch.from_numpy(a["q"]).to(dtype))
    assert ref["V"].dtype == torch.float32  # the default dtype agrees with ShardDataset's
    with pytest.raises(IndexError):
        ds[len(ds)]


class _Probe(FreshOrbits):
    """Also reports the torch threads of the process that made the item."""

    def __getitem__(self, index):
        return {**super().__getitem__(index), "threads": torch.tensor(torch.get_num_threads())}


def test_chunks_identical_for_any_number_of_workers(config):
    ds = _Probe(config, 3, POTS, torch.float64)
    torch.manual_seed(123)
    rng_state = torch.get_rng_state()
    runs = {w: list(iterate_chunks(ds, 2, 6, num_workers=w)) for w in (0, 1, 2)}
    assert torch.equal(torch.get_rng_state(), rng_state)  # the caller's RNG is not consumed
    for w in (1, 2):
        assert len(runs[w]) == 4
        for a, b in zip(runs[0], runs[w], strict=True):
            assert all(torch.equal(a[k], b[k]) for k in BATCH_KEYS)
        assert all(int(c["threads"]) == 1 for c in runs[w])  # workers do not oversubscribe
    for k, c in zip(range(2, 6), runs[0], strict=True):
        assert torch.equal(c["q"], ds[k]["q"])
    assert list(iterate_chunks(ds, 3, 3)) == []


def test_fresh_chunks_never_replay_the_datasets_shards(tiny_dataset, config):
    m = read_manifest(tiny_dataset)
    stored = np.concatenate([read_shard(tiny_dataset / s["file"])["q0"] for s in m["shards"]])
    stored_V = np.concatenate([read_shard(tiny_dataset / s["file"])["V"] for s in m["shards"]])
    seed, size = config["seed"], config["shard_size"]
    # the check would see a replay: a shard's own generator reproduces its rows
    ss = np.random.SeedSequence(seed, spawn_key=(0, 0))
    replay, _ = sample_rows(config, np.random.Generator(np.random.PCG64(ss)), size, 0)
    assert same(replay, read_shard(tiny_dataset / "train-00000.parquet"))
    for index in range(3):  # the shards' indices, the dataset's seed and shard size
        d = fresh_chunk(config, seed, index, size)
        assert not np.isin(d["q0"], stored).any()
        assert not (d["V"][:, None, :] == stored_V[None]).all(axis=2).any()


def test_read_build_config_errors_are_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "empty", tmp_path / "nowhere"):
        with pytest.raises(NHError) as e:
            read_build_config(folder)
        msg = str(e.value)
        assert "\n" not in msg and str(folder) in msg and "nh data build" in msg
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{not json")
    with pytest.raises(NHError, match="unreadable manifest") as e:
        FreshOrbits.from_folder(tmp_path / "bad", 0, POTS)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(seed=-1), "seed must be a non-negative integer"),
        (dict(potentials=0), "potentials must be a positive integer"),
        (dict(dtype=torch.int64), "dtype must be torch.float32 or torch.float64"),
        (dict(config={"ic": "strata"}), "configuration lacks V0, times, integrator, dt"),
    ],
)
def test_bad_arguments(config, kwargs, message):
    args = dict(config=config, seed=0, potentials=POTS) | kwargs
    with pytest.raises(NHError, match=message):
        FreshOrbits(**args)


def test_stream_never_imports_torch():
    code = "import sys, nh_data.stream; assert 'torch' not in sys.modules, 'torch imported'"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
