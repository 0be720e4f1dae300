"""`nh data build` on Dask (issue 11) and the folder lock of every build.

A LocalCluster of 2 single-threaded worker processes stands for a cluster: the bytes
equal a `--workers 1` build, a worker SIGKILLed mid-shard and a SIGKILLed client change
nothing, a task failing on its own ends the build in one line; the lock refuses a
second build into a folder and takes over the lock of a dead process.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import cli
from nh_data import cluster as nc
from nh_data.build import build_dataset
from nh_data.errors import NHError
from nh_data.fileio import sha256_file
from nh_data.lock import LOCK, FolderLock
from nh_data.schema import STATE_DIR

REPO = Path(__file__).resolve().parents[1]
ARGS = dict(seed=4, shard_size=2)  # n = 24: 12 shards of 2 potentials (8 orbits each)
N = 24


def shard_hashes(d: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(d.glob("*.parquet"))}


def run_cli(args):
    return CliRunner().invoke(cli.nh, args)


def one_error_line(res) -> str:
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("Error: "), res.output
    return lines[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The dataset of ARGS built by one process, the way every other build must match."""
    out = tmp_path_factory.mktemp("ref") / "w1"
    return out, build_dataset(out, N, workers=1, progress=False, **ARGS)


@pytest.fixture(scope="module")
def dask_cluster():
    """A LocalCluster of 2 single-threaded worker processes, shared by this module's tests."""
    from distributed import Client, LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    ) as lc, Client(lc) as client:  # fmt: skip
        yield lc, client


# ---------------------------------------------------------------- the same bytes


def test_local_cluster_cli_build_equals_one_worker(tmp_path, reference):
    ref_dir, ref = reference
    out = tmp_path / "dask"
    args = ["--n", str(N), "--seed", "4", "--shard-size", "2", "--out", str(out), "--quiet"]
    res = run_cli(["data", "build", *args, "--scheduler", "local:2"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().endswith("rows in 12 shards; rejected: none")
    assert shard_hashes(out) == shard_hashes(ref_dir) and len(shard_hashes(out)) == 12
    # the manifest has no timing or host fields: byte for byte the same
    assert (out / "manifest.json").read_bytes() == (ref_dir / "manifest.json").read_bytes()
    assert not (out / LOCK).exists() and not [p for p in out.iterdir() if ".tmp" in p.name]
    again = run_cli(["data", "build", *args])  # resumed without Dask: nothing to do, same answer
    assert again.exit_code == 0 and again.stdout == res.stdout


def _arm_suicide(marker: str) -> None:
    """Run inside one worker: its first shard writes half a temporary file, then SIGKILLs the worker."""
    import nh_data.build as nb

    original = nb.write_shard

    def write_shard(out_dir, config, spec, progress=None):
        nb.write_shard = original
        Path(marker).write_text(str(os.getpid()))
        nb._tmp_name(Path(out_dir) / spec.file).write_bytes(b"PAR1 half a shard")
        os.kill(os.getpid(), signal.SIGKILL)

    nb.write_shard = write_shard


def test_worker_killed_mid_shard_same_dataset(tmp_path, reference, dask_cluster):
    ref_dir, ref = reference
    lc, client = dask_cluster
    victim = sorted(client.scheduler_info()["workers"])[0]
    marker = tmp_path / "killed.pid"
    client.run(_arm_suicide, str(marker), workers=[victim])
    out = tmp_path / "dask"
    m = build_dataset(out, N, scheduler=lc.scheduler_address, progress=False, **ARGS)
    pid = int(marker.read_text())  # the worker did die mid-shard...
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert m == ref  # ...and its shard was built again elsewhere, identically
    assert shard_hashes(out) == shard_hashes(ref_dir)
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name]  # its half file is gone
    assert not (out / LOCK).exists()


def test_client_killed_then_same_command_resumes(tmp_path, dask_cluster, kill_build_part_way):
    lc, _ = dask_cluster
    out = tmp_path / "killed"
    n, args = 120, ["--seed", "5", "--shard-size", "2"]
    cmd = [sys.executable, "-m", "cli", "data", "build", "--n", str(n), *args, "--out", str(out), "--quiet"]
    cmd += ["--scheduler", lc.scheduler_address]
    done = kill_build_part_way(cmd, out, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert 3 <= done < 60, "the client must be killed part-way"
    assert not (out / "manifest.json").exists()
    assert (out / LOCK).exists()  # stale: its process is gone
    res = subprocess.run(
        cmd, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    ref5 = build_dataset(tmp_path / "ref", n, progress=False, seed=5, shard_size=2)
    assert shard_hashes(out) == shard_hashes(tmp_path / "ref")
    assert json.loads((out / "manifest.json").read_text()) == ref5


def test_ctrl_c_stops_a_local_cluster_build_within_seconds(tmp_path, interrupt_build_part_way):
    """Issue 24 (7): SIGINT to the process group: the client cancels the shards, closes the cluster
    and prints one line (its forked workers ignore SIGINT: no traceback of theirs)."""
    out = tmp_path / "d"
    cmd = [sys.executable, "-m", "cli", "data", "build", "--n", "2000", "--shard-size", "10", "--scheduler",
           "local:2", "--out", str(out), "--quiet"]  # fmt: skip
    interrupt_build_part_way(cmd, out, REPO)


def test_a_task_failing_on_its_own_is_one_line(tmp_path, dask_cluster):
    lc, _ = dask_cluster
    out = tmp_path / "d"
    build = dict(seed=1, shard_size=1, scheduler=lc.scheduler_address, progress=False)
    build_dataset(out, 4, shards="0:1", **build)
    record = out / STATE_DIR / "train-00001.parquet.json"
    record.mkdir()  # the worker cannot write this shard's record: a folder holds its name
    with pytest.raises(NHError) as err:
        build_dataset(out, 4, **build)
    assert str(err.value) == f"shard train-00001.parquet: cannot write ({record}): Is a directory"
    assert not (out / LOCK).exists() and not (out / "manifest.json").exists()


def test_shard_not_visible_to_the_client_is_refused(tmp_path):
    record = {"file": "train-00000.parquet", "sha256": "0" * 64}
    with pytest.raises(NHError, match="is missing here; the output folder must be one shared filesystem"):
        nc.check_shard(tmp_path, record)
    (tmp_path / record["file"]).write_bytes(b"x")
    with pytest.raises(NHError, match="holds other bytes than the worker wrote"):
        nc.check_shard(tmp_path, record)


# ---------------------------------------------------------------- reaching the cluster


def test_bad_scheduler_address_fails_fast_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(nc, "CONNECT_TIMEOUT_S", 1)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "d"
    t0 = time.perf_counter()
    res = run_cli(
        ["data", "build", "--n", "4", "--out", str(out), "--quiet", "--scheduler", f"tcp://127.0.0.1:{port}"]
    )
    assert time.perf_counter() - t0 < 10
    line = one_error_line(res)
    assert line.startswith(f"Error: cannot reach the Dask scheduler at tcp://127.0.0.1:{port}: ")
    assert not out.exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        ("not json {", "not a Dask scheduler file"),
        ('{"type": "Scheduler", "id": "x"}', "not a Dask scheduler file"),
        ("[1, 2]", "not a Dask scheduler file"),
    ],
)
def test_scheduler_file_missing_or_malformed_one_line(tmp_path, content, message):
    sf = tmp_path / "scheduler.json"
    if content is not None:
        sf.write_text(content)
    res = run_cli(["data", "build", "--n", "4", "--out", str(tmp_path / "d"), "--scheduler-file", str(sf)])
    assert one_error_line(res).startswith(f"Error: --scheduler-file {sf}: {message}")
    assert not (tmp_path / "d").exists()


def test_scheduler_file_is_read(tmp_path, dask_cluster):
    lc, _ = dask_cluster
    sf = tmp_path / "scheduler.json"
    sf.write_text(json.dumps({"type": "Scheduler", "address": lc.scheduler_address}))
    m = build_dataset(tmp_path / "d", 2, seed=1, scheduler_file=sf, progress=False)
    assert m == build_dataset(tmp_path / "w1", 2, seed=1, progress=False)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--scheduler", "local:2", "--workers", "2"], "--workers sizes the process pool"),
        (["--scheduler", "local:0"], "--scheduler local:N needs N >= 1"),
        (
            ["--scheduler", "local:2", "--scheduler-file", "x.json"],
            "give --scheduler or --scheduler-file, not both",
        ),
    ],
)
def test_scheduler_options_checked_first(tmp_path, args, message):
    res = run_cli(["data", "build", "--n", "4", "--out", str(tmp_path / "d"), *args])
    assert message in one_error_line(res)
    assert not (tmp_path / "d").exists()


def test_without_dask_one_line_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` now fails
    res = run_cli(["data", "build", "--n", "4", "--out", str(tmp_path / "d"), "--scheduler", "local:2"])
    assert one_error_line(res) == f"Error: --scheduler needs Dask, an optional extra: {nc.EXTRA}"
    assert not (tmp_path / "d").exists()


def test_nh_data_imports_dask_only_for_a_scheduler():
    code = (
        "import sys, nh_data.build, nh_data.cluster, nh_data.lock, cli; "
        "assert 'distributed' not in sys.modules and 'dask' not in sys.modules"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------- the folder lock


def test_second_build_into_the_folder_refused_first_intact(tmp_path):
    out = tmp_path / "d"
    code = (
        f"from nh_data.build import build_dataset; build_dataset({str(out)!r}, 400, seed=1, progress=False)"
    )
    first = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO))
    )
    deadline = time.time() + 60
    while time.time() < deadline and not (out / LOCK).exists():
        time.sleep(0.005)
    t0 = time.perf_counter()
    res = run_cli(["data", "build", "--n", "400", "--seed", "2", "--out", str(out), "--quiet", "--overwrite"])
    line = one_error_line(res)
    assert first.poll() is None, "the first build must still be running"
    assert time.perf_counter() - t0 < 2  # at once
    host = socket.gethostname()
    assert line.startswith(f"Error: {out} is being built by process {first.pid} on {host} since 20")
    assert first.wait(timeout=120) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["config"]["seed"] == 1 and len(m["shards"]) == 1 + 1 + 1
    assert all(sha256_file(out / s["file"]) == s["sha256"] for s in m["shards"])
    assert not (out / LOCK).exists()


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    stale = {"pid": _dead_pid(), "host": socket.gethostname(), "started": "2026-01-01 00:00:00 UTC"}
    (out / LOCK).write_text(json.dumps(stale))
    m = build_dataset(out, 2, seed=1, progress=False)
    assert m["counts"]["train"] > 0 and not (out / LOCK).exists()


def test_lock_of_another_host_or_a_live_process_is_respected(tmp_path):
    (tmp_path / LOCK).write_text(
        json.dumps({"pid": 1, "host": "node-17", "started": "2026-01-01 00:00:00 UTC"})
    )
    with pytest.raises(NHError, match=r"being built by process 1 on node-17 since 2026-01-01 00:00:00 UTC"):
        build_dataset(tmp_path, 2, progress=False)
    (tmp_path / "x").mkdir()
    with FolderLock(tmp_path / "x"):  # held by this very process: alive
        with pytest.raises(NHError, match=f"being built by process {os.getpid()} on"):
            build_dataset(tmp_path / "x", 2, progress=False)
        assert (tmp_path / "x" / LOCK).exists()  # the refused build leaves the holder's lock alone
    assert not (tmp_path / "x" / LOCK).exists()
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == []


def test_lock_released_on_error_and_interrupt(tmp_path, monkeypatch):
    import nh_data.build as nb

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(nb, "write_shard", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_dataset(tmp_path / "d", 2, progress=False)
    assert not (tmp_path / "d" / LOCK).exists()
    monkeypatch.undo()
    assert build_dataset(tmp_path / "d", 2, progress=False)["counts"]["train"] > 0
