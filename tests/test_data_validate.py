"""`nh data info` and `nh data validate`: a good dataset passes; corruption is caught and located."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import cli
from nh_data.errors import NHError
from nh_data.fileio import sha256_file
from nh_data.schema import SCHEMA, read_manifest
from nh_data.validate import format_info, info, validate


def rewrite_value(path, row, column, index, delta):
    """Add delta to column[row][index] of a shard and rewrite it (valid Parquet, same schema)."""
    table = pq.read_table(path)
    arr = table.column(column).combine_chunks()
    flat = arr.values.to_numpy().copy()
    flat[row * arr.type.list_size + index] += delta
    new = pa.FixedSizeListArray.from_arrays(pa.array(flat), arr.type.list_size)
    table = table.set_column(table.schema.get_field_index(column), column, new).cast(SCHEMA)
    pq.write_table(table, path, compression="zstd")


def refresh_checksum(ds, file):
    m = json.loads((ds / "manifest.json").read_text())
    for s in m["shards"]:
        if s["file"] == file:
            s["sha256"] = sha256_file(ds / file)
    (ds / "manifest.json").write_text(json.dumps(m))


def test_good_dataset_passes(tiny_dataset):
    r = validate(tiny_dataset, sample=24)
    assert r["problems"] == []
    assert r["checked_rows"] == 24 and r["sampled_rows"] == 24
    assert r["max_deviation"] < 1e-8  # every row re-integrated independently, within the certificate


def test_catches_corrupted_value_and_names_file_and_row(tiny_copy):
    # 1e-6 in q: invisible to the energy check (|dH| ~ 1e-6), caught by the re-integration
    rewrite_value(tiny_copy / "val-00000.parquet", 2, "q", 40, 1e-6)
    refresh_checksum(tiny_copy, "val-00000.parquet")  # so that only the value is wrong
    r = validate(tiny_copy, sample=24)
    assert len(r["problems"]) == 1
    assert r["problems"][0].startswith("val-00000.parquet row 2: stored orbit differs from an independent")


def test_catches_bad_checksum(tiny_copy):
    m = read_manifest(tiny_copy)
    m["shards"][3]["sha256"] = "0" * 64
    (tiny_copy / "manifest.json").write_text(json.dumps(m))
    r = validate(tiny_copy, sample=0)
    assert r["problems"] == ["test-00001.parquet: checksum mismatch (sha256 differs from the manifest)"]


def test_catches_byte_flip_and_cli_exits_nonzero(tiny_copy):
    path = tiny_copy / "test-00000.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(data))
    res = CliRunner().invoke(cli.nh, ["data", "validate", str(tiny_copy), "--sample", "0"])
    assert res.exit_code == 1
    assert "test-00000.parquet: checksum mismatch" in res.stderr


def test_catches_row_level_problems(tiny_copy):
    rewrite_value(tiny_copy / "train-00000.parquet", 5, "V", 10, 0.5)  # sensors no longer the spline
    rewrite_value(tiny_copy / "train-00000.parquet", 1, "p", 0, 1.0)  # p[0] != p0
    refresh_checksum(tiny_copy, "train-00000.parquet")
    problems = validate(tiny_copy, sample=0)["problems"]
    assert "train-00000.parquet row 5: sensor values V differ from the stored B-spline" in problems
    assert "train-00000.parquet row 1: q[0], p[0] differ from q0, p0" in problems


def test_missing_shard_and_wrong_counts(tiny_copy):
    (tiny_copy / "val-00000.parquet").unlink()
    m = read_manifest(tiny_copy)
    m["counts"]["train"] += 1
    (tiny_copy / "manifest.json").write_text(json.dumps(m))
    problems = validate(tiny_copy, sample=0)["problems"]
    assert "val-00000.parquet: missing" in problems
    assert "manifest: counts[train] = 9 but shards hold 8 rows" in problems


def test_missing_or_corrupt_manifest(tmp_path, tiny_copy):
    with pytest.raises(NHError, match="no such dataset directory"):
        validate(tmp_path / "nope")
    (tiny_copy / "manifest.json").write_text("{not json")
    with pytest.raises(NHError, match="unreadable manifest"):
        read_manifest(tiny_copy)
    (tiny_copy / "manifest.json").unlink()
    res = CliRunner().invoke(cli.nh, ["data", "validate", str(tiny_copy)])
    assert res.exit_code == 2
    assert (
        res.output.strip()
        == f"Error: {tiny_copy / 'manifest.json'}: missing: the build is not finished; run the same `nh data build` again"
    )


def test_info(tiny_dataset):
    d = info(tiny_dataset)
    assert d["counts"] == {"train": 8, "val": 4, "test": 12}
    assert d["shards"] == 4
    s = d["summary"]["train"]
    assert sum(s["b"].values()) == 8
    assert 0.05 <= s["u"]["min"] <= s["u"]["max"] < 0.99
    assert s["err_est"]["max"] <= 1e-8
    text = format_info(d)
    assert "train: 8 rows from 2 potentials" in text and "integrator=dop853" in text
    res = CliRunner().invoke(cli.nh, ["data", "info", str(tiny_dataset)])
    assert res.exit_code == 0 and res.stdout.strip() == text


def test_cli_validate_ok(tiny_dataset):
    res = CliRunner().invoke(cli.nh, ["data", "validate", str(tiny_dataset), "--sample", "3"])
    assert res.exit_code == 0
    assert res.stdout.startswith(f"{tiny_dataset}: OK (24 rows checked, 3 re-integrated, max deviation")


def test_sample_is_deterministic(tiny_dataset):
    assert validate(tiny_dataset, sample=4, seed=1) == validate(tiny_dataset, sample=4, seed=1)
    assert np.isfinite(validate(tiny_dataset, sample=4, seed=2)["max_deviation"])


@pytest.mark.parametrize("args, message", [(["--sample", "-1"], "--sample must be a non-negative integer, got -1"),
                                           (["--seed", "-2"], "--seed must be a non-negative integer, got -2"),
                                           (["--sample", "x"], "'x' is not a valid integer")])  # fmt: skip
def test_validate_bad_options_one_line(tiny_dataset, args, message):
    res = CliRunner().invoke(cli.nh, ["data", "validate", str(tiny_dataset), *args])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0]


def test_info_names_an_unreadable_shard(tiny_copy):
    (tiny_copy / "val-00000.parquet").unlink()
    res = CliRunner().invoke(cli.nh, ["data", "info", str(tiny_copy)])
    assert res.exit_code == 2
    assert res.output.startswith("Error: val-00000.parquet: unreadable")
    assert len(res.output.strip().splitlines()) == 1
