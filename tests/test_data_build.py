"""`nh data build`: schema, manifest contract, determinism, shards, resume after SIGKILL, refusals, bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
import scipy.interpolate as si
from click.testing import CliRunner

import cli
from nh_data.build import build_dataset, plan, resolve_config
from nh_data.errors import NHError
from nh_data.fileio import sha256_file
from nh_data.schema import SCHEMA, WINDOW, read_manifest
from nh_data.validate import read_shard

REPO = Path(__file__).resolve().parents[1]


def shard_hashes(d: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(d.glob("*.parquet"))}


def test_layout_schema_and_manifest_contract(tiny_dataset):
    m = read_manifest(tiny_dataset)
    for key in ("schema_version", "config", "seeds", "counts", "rejections", "versions", "shards"):
        assert key in m
    assert isinstance(m["schema_version"], int)
    files = [s["file"] for s in m["shards"]]
    assert files == ["train-00000.parquet", "val-00000.parquet", "test-00000.parquet", "test-00001.parquet"]
    assert sorted(p.name for p in tiny_dataset.glob("*.parquet")) == sorted(files)
    for s in m["shards"]:
        path = tiny_dataset / s["file"]
        assert s["sha256"] == sha256_file(path)
        assert pq.read_schema(path).equals(SCHEMA)
        assert pq.read_metadata(path).num_rows == s["rows"]
        assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"
    for split in ("train", "val", "test"):
        assert m["counts"][split] == sum(s["rows"] for s in m["shards"] if s["split"] == split)
    # n = 6: 3 train+val potentials (2 train, 1 val), 3 test; 4 orbits each, none rejected here
    assert m["potentials"] == {"train": 2, "val": 1, "test": 3}
    assert m["counts"] == {"train": 8, "val": 4, "test": 12}
    assert m["config"]["integrator"] == "dop853" and m["config"]["seed"] == 7


def test_rows_are_exact_and_self_consistent(tiny_dataset):
    d = read_shard(tiny_dataset / "train-00000.parquet")
    assert d["q"].shape == (8, WINDOW) and d["V"].shape == (8, 100)
    for i in range(8):
        spl = si.BSpline(d["knots"][i], d["coeffs"][i], 3)
        assert np.abs(spl(np.linspace(0, 1, 100)) - d["V"][i]).max() < 1e-12
        assert np.allclose(0.5 * d["p"][i] ** 2 + spl(d["q"][i]), d["E0"][i], atol=1e-8)
        assert d["q"][i, 0] == d["q0"][i] and d["p"][i, 0] == d["p0"][i]
    assert np.all(d["err_est"] <= 1e-8)
    assert np.all(d["b"] + 6 == [len(k) for k in d["knots"]])


def test_readable_by_polars(tiny_dataset):
    df = pl.read_parquet(tiny_dataset / "test-00000.parquet")
    assert df.shape == (8, 15)
    assert df["q"].dtype == pl.Array(pl.Float64, 100)
    assert df["knots"].dtype == pl.List(pl.Float64)
    all_pids = pl.concat(
        [pl.read_parquet(p, columns=["pid"]) for p in sorted(tiny_dataset.glob("*.parquet"))]
    )
    assert all_pids["pid"].n_unique() == 6  # potential ids unique across splits


def test_same_bytes_for_any_worker_count(tmp_path):
    a = build_dataset(tmp_path / "w1", 10, seed=3, shard_size=2, workers=1, progress=False)
    b = build_dataset(tmp_path / "w2", 10, seed=3, shard_size=2, workers=2, progress=False)
    assert shard_hashes(tmp_path / "w1") == shard_hashes(tmp_path / "w2")
    assert a == b
    assert (tmp_path / "w1" / "manifest.json").read_bytes() == (
        tmp_path / "w2" / "manifest.json"
    ).read_bytes()


def test_shard_ranges_union_equals_full_build(tmp_path):
    full = build_dataset(tmp_path / "full", 10, seed=3, shard_size=2, progress=False)
    n_shards = len(plan(resolve_config(10, seed=3, shard_size=2)))
    part = build_dataset(tmp_path / "split", 10, seed=3, shard_size=2, shards="0:3", progress=False)
    assert part["complete"] is False and part["shards_missing"] == n_shards - 3
    assert not (tmp_path / "split" / "manifest.json").exists()
    # another machine builds the rest; here: the same directory, the remaining range
    rest = build_dataset(tmp_path / "split", 10, seed=3, shard_size=2, shards=f"3:{n_shards}", progress=False)
    assert rest == full
    assert shard_hashes(tmp_path / "split") == shard_hashes(tmp_path / "full")


def test_different_seed_different_data(tmp_path):
    build_dataset(tmp_path / "a", 4, seed=1, progress=False)
    build_dataset(tmp_path / "b", 4, seed=2, progress=False)
    assert shard_hashes(tmp_path / "a") != shard_hashes(tmp_path / "b")


def test_resume_after_sigkill(tmp_path, kill_build_part_way):
    args = dict(seed=5, shard_size=5)
    n = 300
    ref = build_dataset(tmp_path / "ref", n, progress=False, **args)
    out = tmp_path / "killed"
    code = (
        "from nh_data.build import build_dataset; "
        f"build_dataset({str(out)!r}, {n}, seed=5, shard_size=5, progress=False)"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = kill_build_part_way([sys.executable, "-c", code], out, env=env, cwd=REPO)
    assert 3 <= done < len(ref["shards"]), "the build must be killed part-way"
    assert not (out / "manifest.json").exists()
    for p in out.glob("*.parquet"):  # nothing partial under a final name
        pq.read_metadata(p)
    resumed = build_dataset(out, n, progress=False, **args)
    assert resumed == ref
    assert shard_hashes(out) == shard_hashes(tmp_path / "ref")
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]


def test_resume_rebuilds_a_corrupted_shard(tmp_path):
    ref = build_dataset(tmp_path / "d", 4, seed=1, shard_size=1, progress=False)
    victim = tmp_path / "d" / ref["shards"][0]["file"]
    victim.write_bytes(b"garbage")
    assert build_dataset(tmp_path / "d", 4, seed=1, shard_size=1, progress=False) == ref
    assert sha256_file(victim) == ref["shards"][0]["sha256"]


def test_refuses_to_mix_configurations(tmp_path):
    out = tmp_path / "d"
    build_dataset(out, 4, seed=1, progress=False)
    before = shard_hashes(out)
    with pytest.raises(NHError, match=r"another configuration \(differs in: seed\).*--overwrite"):
        build_dataset(out, 4, seed=2, progress=False)
    assert shard_hashes(out) == before
    m = build_dataset(out, 4, seed=2, overwrite=True, progress=False)
    assert m["config"]["seed"] == 2 and shard_hashes(out) != before


def test_refuses_foreign_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(NHError, match="not empty and holds no nh dataset"):
        build_dataset(tmp_path, 2, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_paper_way_yoshida8_with_certificate_and_wall_starts(tmp_path):
    m = build_dataset(tmp_path / "y8", 8, seed=0, ic="wall", times="uniform", integrator="yoshida8", dt=1e-3,
                      progress=False)  # fmt: skip
    rej = sum(m["rejections"][s]["not_certified"] for s in m["rejections"])
    rows = sum(m["counts"].values())
    # wall starts: the paper's split, 8 train+val potentials (80/20) and a test split of 0.4 x 8
    assert m["potentials"] == {"train": 6, "val": 2, "test": 3}
    assert rows + rej == 11  # one orbit per potential; the rest refused by the certificate, counted
    for s in m["shards"]:
        d = read_shard(tmp_path / "y8" / s["file"])
        assert np.all(d["q0"] == 0) and np.all(d["p0"] == 0) and np.all(d["E0"] == 2.0)
        assert np.all(d["t"] == np.linspace(0, 2, 100)) and np.all(d["err_est"] <= 1e-8)


def run_cli(args):
    return CliRunner().invoke(cli.nh, args)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--n", "0"], "--n must be a positive integer, got 0"),
        (["--n", "-3"], "--n must be a positive integer, got -3"),
        (["--n", "abc"], "'abc' is not a valid integer"),
        (["--n", "4", "--workers", "0"], "--workers must be a positive integer, got 0"),
        (["--n", "4", "--ic", "middle"], "unknown --ic 'middle'; valid: strata, wall"),
        (["--n", "4", "--times", "log"], "unknown --times 'log'; valid: random, uniform"),
        (["--n", "4", "--integrator", "euler"], "unknown integrator 'euler'; valid: dop853, leapfrog"),
        (["--preset", "huge"], "unknown preset 'huge'; valid: normal, more, much"),
        (["--n", "5", "--preset", "normal"], "give either --n or --preset, not both"),
        (["--n", "4", "--shards", "a:b"], "--shards must look like I:J"),
        (["--n", "4", "--shards", "2:1"], "--shards 2:1 out of range"),
        (["--n", "4", "--shards", "0:99"], "--shards 0:99 out of range"),
        (["--n", "4", "--shard-size", "0"], "--shard-size must be a positive integer"),
        (["--n", "4", "--integrator", "yoshida8"], "needs --dt"),
        (["--n", "4", "--dt", "1e-3"], "--dt applies to fixed-step integrators only"),
        (["--n", "4", "--integrator", "rk4", "--dt", "-1"], "--dt must be in (0, 0.1]"),
        (["--n", "4", "--seed", "-1"], "--seed must be a non-negative integer"),
        ([], "give --n N or --preset"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, args, message):
    out = tmp_path / "out"
    res = run_cli(["data", "build", "--out", str(out), "--quiet", *args])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], res.output
    assert not out.exists()


def test_unwritable_directory(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    res = run_cli(["data", "build", "--n", "2", "--quiet", "--out", str(blocker / "sub")])
    assert res.exit_code == 2
    assert res.output.strip() == f"Error: cannot write to {blocker / 'sub'}: {blocker} is not a directory"
    assert not (blocker / "sub").exists()


def test_cli_build_progress_and_quiet(tmp_path):
    loud = run_cli(["data", "build", "--n", "2", "--out", str(tmp_path / "a")])
    assert loud.exit_code == 0, loud.output
    # not a terminal (issue 24, 2): no bar, no carriage return; one line for the phase, with its rate
    assert re.fullmatch(r"nh data build: 2 pot in \d\.\d s, [\d,.]+ pot/s\n", loud.stderr), loud.stderr
    assert "train 4, val 0, test 4 rows" in loud.stdout
    quiet = run_cli(["data", "build", "--n", "2", "--out", str(tmp_path / "b"), "--quiet"])
    assert quiet.exit_code == 0 and quiet.stderr == ""
    assert shard_hashes(tmp_path / "a") == shard_hashes(tmp_path / "b")


def test_nh_data_never_imports_torch():
    code = (
        "import sys, nh_data, nh_data.build, nh_data.validate, nh_data.ground_truth, nh_data.schema; "
        "import cli; "
        "from click.testing import CliRunner; CliRunner().invoke(cli.nh, ['data', '--help']); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_manifest_is_json_readable_by_anyone(tiny_dataset):
    m = json.loads((tiny_dataset / "manifest.json").read_text())
    assert m == read_manifest(tiny_dataset)


def test_cli_partial_shards_then_complete(tmp_path):
    out = tmp_path / "d"
    part = run_cli(
        ["data", "build", "--n", "4", "--shard-size", "1", "--shards", "0:2", "--out", str(out), "--quiet"]
    )
    assert part.exit_code == 0
    assert (
        part.stdout.strip() == f"{out}: built shards train-00000.parquet, train-00001.parquet; 2 still missing"
    )
    done = run_cli(["data", "build", "--n", "4", "--shard-size", "1", "--out", str(out), "--quiet"])
    assert done.exit_code == 0 and "train 8, val 0, test 8 rows in 4 shards" in done.stdout


def test_write_failure_becomes_one_line_error(tmp_path, monkeypatch):
    import errno

    import nh_data.build as nb

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(nb, "write_shard", full)
    with pytest.raises(NHError, match=r"^cannot write to .*: No space left on device$"):
        build_dataset(tmp_path / "d", 2, progress=False)


def test_build_summary_adds_the_rejections_of_every_split(tmp_path, monkeypatch):
    """Issue 24 (8): train 1 + test 3 rejections of one reason are 4 in the summary, not the last split's 3."""
    import nh_data.build as nb
    from nh_data.schema import rejection_totals

    manifest = {
        "counts": {"train": 12, "val": 4, "test": 9},
        "shards": [{}, {}, {}],
        "rejections": {
            "train": {"not_certified": 1, "energy_drift": 0},
            "val": {"not_certified": 0, "energy_drift": 2},
            "test": {"not_certified": 3, "energy_drift": 0},
        },
    }
    assert rejection_totals(manifest) == {"not_certified": 4, "energy_drift": 2}
    assert rejection_totals({"rejections": {"train": {"x": 0}}}) == {}
    monkeypatch.setattr(nb, "build_dataset", lambda *a, **k: manifest)
    res = run_cli(["data", "build", "--n", "5", "--out", str(tmp_path / "d"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().endswith("rejected: {'not_certified': 4, 'energy_drift': 2}")


def test_ctrl_c_stops_a_multi_worker_build_within_seconds(tmp_path, interrupt_build_part_way):
    out = tmp_path / "d"
    cmd = [sys.executable, "-m", "cli", "data", "build", "--n", "2000", "--shard-size", "10", "--workers", "2",
           "--out", str(out), "--quiet"]  # fmt: skip
    interrupt_build_part_way(cmd, out, REPO)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_full_disk_leaves_no_partial_shard(tmp_path, monkeypatch, workers):
    """Issue 24 (3): ENOSPC in the middle of a shard's write: one line, and no temporary file left
    (the write had put real bytes into it); a rerun builds the dataset."""
    import errno

    seen = tmp_path / "seen"

    class FullDisk(pq.ParquetWriter):
        def write_table(self, table, *args, **kwargs):
            super().write_table(table, *args, **kwargs)  # bytes reach the temporary file...
            with open(seen, "a") as f:  # (from a worker process too)
                f.writelines(f"{p.name}\n" for p in (tmp_path / "d").glob(".*.parquet.tmp-*"))
            raise OSError(errno.ENOSPC, "No space left on device")  # ...then the disk is full

    monkeypatch.setattr(pq, "ParquetWriter", FullDisk)
    out = tmp_path / "d"
    res = run_cli(["data", "build", "--n", "4", "--shard-size", "1", "--workers", str(workers), "--out", str(out),
                   "--quiet"])  # fmt: skip
    assert res.exit_code == 2
    assert res.output.strip() == f"Error: cannot write to {out}: No space left on device"
    assert seen.read_text().strip()  # a partial shard existed when the write failed...
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]  # ...and is gone
    assert not list(out.glob("*.parquet"))
    monkeypatch.undo()
    again = run_cli(["data", "build", "--n", "4", "--shard-size", "1", "--out", str(out), "--quiet"])
    assert again.exit_code == 0 and "rows in 4 shards" in again.stdout
