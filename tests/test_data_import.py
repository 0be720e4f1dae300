"""`nh data import` and `nh data validate` of imported orbits (issue 22): a round trip from a built
dataset, resampled sensors, training and evaluation on the imported folder, and one-line errors
(exit status 2) that leave nothing written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from cli import nh
from nh_data.problem import SENSORS
from nh_data.schema import read_manifest
from nh_data.validate import read_shard, validate

pytestmark = pytest.mark.usefixtures("torch_one_thread")
KEYS = ("V", "t", "q", "p", "q0", "p0")


def _rows(folder: Path) -> dict[str, np.ndarray]:
    """Every row of a dataset folder (shards in manifest order), with its split."""
    parts = [(s["split"], read_shard(folder / s["file"])) for s in read_manifest(folder)["shards"]]
    out = {k: np.concatenate([d[k] for _, d in parts]) for k in (*KEYS, "E0", "u", "pid", "err_est")}
    out["split"] = np.concatenate([[split] * len(d["q0"]) for split, d in parts])
    return out


def _import(src, out, *more):
    return CliRunner().invoke(nh, ["data", "import", str(src), "--out", str(out), *map(str, more)])


@pytest.fixture(scope="module")
def exported(tiny_dataset, tmp_path_factory):
    """The rows of `tiny_dataset` as a .npz and a Parquet file of the user's kind, and the rows."""
    root = tmp_path_factory.mktemp("export")
    rows = _rows(tiny_dataset)
    np.savez(root / "orbits.npz", **{k: rows[k] for k in KEYS})
    lists = {k: pa.array(list(rows[k]), type=pa.list_(pa.float64())) for k in ("V", "t", "q", "p")}
    pq.write_table(pa.table(lists), root / "orbits.parquet")  # no q0, p0: taken from q[:, 0], p[:, 0]
    return root, rows


@pytest.fixture(scope="module")
def imported(exported, tmp_path_factory):
    root, _ = exported
    out = tmp_path_factory.mktemp("imported") / "ds"
    res = _import(root / "orbits.npz", out, "--val", 0.2, "--test", 0.2, "--seed", 1)
    assert res.exit_code == 0, res.output
    assert (
        res.stdout.strip()
        == f"{out}: 24 orbits of 6 potentials imported (train 16, val 4, test 4); not certified"
    )
    return out


def test_round_trip_from_a_built_dataset_gives_the_same_rows(exported, imported, tmp_path):
    root, rows = exported
    back = _rows(imported)
    where = {r.tobytes(): i for i, r in enumerate(rows["q"])}
    order = np.array([where[r.tobytes()] for r in back["q"]])  # each imported row's original row
    assert sorted(order) == list(range(24))
    for k in KEYS:
        assert np.array_equal(back[k], rows[k][order]), k
    # E0, u from the spline through the sensors, not the stored B-spline: close, not equal
    assert np.abs(back["E0"] - rows["E0"][order]).max() < 1e-4
    assert np.abs(back["u"] - rows["u"][order]).max() < 1e-4 and np.isnan(back["err_est"]).all()
    # the four orbits of a potential share its id and its split; 6 potentials: 4 train, 1 val, 1 test
    for pid in np.unique(back["pid"]):
        assert len(set(back["split"][back["pid"] == pid])) == 1 and (back["pid"] == pid).sum() == 4
    m = read_manifest(imported)
    assert (
        m["imported"] is True
        and m["certified"] is False
        and m["potentials"] == {"train": 4, "val": 1, "test": 1}
    )
    assert m["config"]["resampled"] is None and m["config"]["source"] == str((root / "orbits.npz").resolve())
    # the same orbits as Parquet columns (no q0, p0) make the same shards
    res = _import(root / "orbits.parquet", tmp_path / "pq", "--val", 0.2, "--test", 0.2, "--seed", 1)
    assert res.exit_code == 0, res.output
    assert [s["sha256"] for s in read_manifest(tmp_path / "pq")["shards"]] == [
        s["sha256"] for s in m["shards"]
    ]


def test_other_sensor_counts_are_resampled_and_any_window_length_loads(tmp_path):
    from nh_models.data import ShardDataset

    rng = np.random.default_rng(0)
    coef = rng.normal(size=(6, 4))  # cubic potentials: the not-a-knot spline through 40 sensors is exact

    def cubic(x):
        return coef[:, :1] + coef[:, 1:2] * x + coef[:, 2:3] * x**2 + coef[:, 3:] * x**3

    t = np.linspace(0.0, 1.5, 50)
    q = 0.5 + 0.1 * np.sin(rng.uniform(1, 3, (6, 1)) * t)
    np.savez(tmp_path / "s40.npz", V=cubic(np.linspace(0, 1, 40)), t=t, q=q, p=np.gradient(q, t, axis=1))
    res = _import(tmp_path / "s40.npz", tmp_path / "ds", "--val", 0.2, "--test", 0.2)
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().endswith("; V resampled from 40 sensors to 100; not certified")
    cfg = read_manifest(tmp_path / "ds")["config"]
    assert cfg["resampled"].startswith("not-a-knot cubic spline through the file's 40 uniform sensors")
    assert (cfg["sensors_in"], cfg["window"], cfg["t_max"]) == (40, 50, 1.5)
    back = _rows(tmp_path / "ds")
    order = [int(np.flatnonzero((q == r).all(axis=1))[0]) for r in back["q"]]
    assert np.abs(back["V"] - cubic(SENSORS)[order]).max() < 1e-12
    ds = ShardDataset(tmp_path / "ds", "train")
    assert ds.W == 50 and ds.get_batch(np.arange(2))["t"].shape == (2, 50)
    assert validate(tmp_path / "ds", sample=2)["problems"] == []


def test_validate_reports_how_far_the_orbits_are_from_the_sensor_interpolant(exported, imported, tmp_path):
    r = validate(imported, sample=3, seed=2)
    assert r["problems"] == [] and r["imported"] and r["checked_rows"] == 24 and r["sampled_rows"] == 3
    # the certified orbits against a spline through their potential's sensors: near, not equal (all 24: 1e-3)
    assert 0 < r["median_deviation"] <= r["max_deviation"] < 1e-2
    res = CliRunner().invoke(nh, ["data", "validate", str(imported), "--sample", "3", "--seed", "2"])
    assert res.exit_code == 0, res.output
    assert re.fullmatch(
        rf"{re.escape(str(imported))}: imported, not certified: 24 rows checked; 3 re-integrated on the sensor "
        r"interpolant \(kahanli8, dt = 2e-05\): the stored orbits deviate by max \S+ \((train|val|test)-\d{5}"
        r"\.parquet row \d+\), median \S+",
        res.stdout.strip(),
    )
    # orbits that drift off the true motion by 0.01 t^2 are reported that far away
    root, rows = exported
    arrays = {k: rows[k] for k in KEYS} | {"q": rows["q"] + 0.01 * rows["t"] ** 2}
    np.savez(tmp_path / "off.npz", **arrays)
    assert _import(tmp_path / "off.npz", tmp_path / "off", "--val", 0.2, "--test", 0.2).exit_code == 0
    r = validate(tmp_path / "off", sample=24)
    assert r["problems"] == [] and 0.038 < r["max_deviation"] < 0.042  # 0.01 * 2^2 at t = 2
    info = CliRunner().invoke(nh, ["data", "info", str(imported)])
    assert info.exit_code == 0 and "not certified: 24 orbits of 6 potentials, 100 sensors" in info.stdout


def test_train_and_eval_run_on_an_imported_folder(imported, tmp_path):
    (tmp_path / "small.yaml").write_text(
        "model: {nodes: 8, layers: 2, branches: 4, trunk: chebyshev}\ntrain: {epochs: 1, batch_size: 8}\n"
    )
    res = CliRunner().invoke(nh, ["train", "deeponet", "--config", str(tmp_path / "small.yaml"), "--data",
                                  str(imported), "--out", str(tmp_path / "runs"), "--device", "cpu", "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    run = res.stdout.splitlines()[0].removeprefix("run folder: ")
    assert "test " in res.stdout.splitlines()[1]  # scored on the imported test split
    res = CliRunner().invoke(
        nh, ["eval", run, "--physics", "none", "--n-sub", "2", "--out", str(tmp_path / "ev"), "-q"]
    )
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["runs"][Path(run).name]["test"]["overall"]["n"] == 4
    res = CliRunner().invoke(
        nh, ["train", "deeponet", "--data", str(imported), "--fresh", "8", "--out", str(tmp_path), "-q"]
    )
    assert (
        res.exit_code == 2
        and "was imported (`nh data import`)" in res.stderr
        and "drop --fresh" in res.stderr
    )


def _good(n: int = 6, w: int = 10) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    t = np.tile(np.linspace(0.0, 2.0, w), (n, 1))
    q = rng.uniform(0.2, 0.8, (n, w))
    return {"V": rng.normal(size=(n, 100)), "t": t, "q": q, "p": rng.normal(size=(n, w))}


def _with(**changes):
    a = _good()
    for key, (row, col, value) in changes.items():
        a[key][row, col] = value
    return a


BAD = {
    "wrong shape": (lambda: _good() | {"p": np.zeros((6, 11))}, "p must have shape (6, 10), got (6, 11)"),
    "missing array": (lambda: {k: v for k, v in _good().items() if k != "p"}, "lacks p (needs V, t, q, p"),
    "NaN": (lambda: _with(V=(3, 5, np.nan)), "V has a NaN or inf value (row 3)"),
    "inf": (lambda: _with(q=(2, 7, np.inf)), "q has a NaN or inf value (row 2)"),
    "t not at 0": (lambda: _with(t=(1, 0, 0.01)), "t must start at 0 (row 1 starts at 0.01)"),
    "t not sorted": (lambda: _with(t=(4, 5, 0.1)), "t must be sorted in time (row 4 is not)"),
    "t beyond the window": (
        lambda: _with(t=(0, 9, 2.5)),
        "t leaves the models' window [0, 2] (row 0 ends at 2.5)",
    ),
    "one orbit": (lambda: {k: v[:1] for k, v in _good().items()}, "needs at least 2 orbits, got 1"),
    "q0 differs": (
        lambda: _good() | {"q0": _good()["q"][:, 0] + 0.1},
        "q0 differs from q[:, 0] at t = 0 (row 0",
    ),
    "too few potentials": (
        lambda: {k: v[:2] for k, v in _good().items()} | {"V": np.zeros((2, 100))},
        "1 distinct potential(s) cannot fill the train, val and test splits",
    ),  # fmt: skip
    "few sensors": (lambda: _good() | {"V": np.zeros((6, 3))}, "V needs at least 4 sensors per orbit, got 3"),
}


@pytest.mark.parametrize("case", [*BAD, "unreadable", "not npz or parquet", "out holds data", "bad fraction"])
def test_bad_input_is_one_line_exit_2_and_nothing_written(case, tmp_path):
    src, out, more = tmp_path / "in.npz", tmp_path / "sub" / "ds", []
    if case in BAD:
        make, message = BAD[case]
        np.savez(src, **make())
    else:
        np.savez(src, **_good())
        if case == "unreadable":
            src.write_bytes(b"PK\x03\x04 not really a zip")
            message = f"cannot read {src} as npz:"
        elif case == "not npz or parquet":
            src = tmp_path / "in.csv"
            src.write_text("V,t\n")
            message = f"{src}: not a .npz or .parquet file"
        elif case == "out holds data":
            out.mkdir(parents=True)
            (out / "notes.txt").write_text("mine")
            message = f"--out {out} already holds data; choose a new or empty folder"
        else:
            more, message = ["--val", "1.5"], "--val must be a fraction in [0, 1), got 1.5"
    res = _import(src, out, *more)
    assert res.exit_code == 2, res.output
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], lines
    if case == "out holds data":
        assert [p.name for p in out.iterdir()] == ["notes.txt"]
    else:
        assert not (tmp_path / "sub").exists()  # nothing written, not even the parent folder
