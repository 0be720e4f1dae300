"""The `nh` entry point as a whole: every command is there, and errors are one line, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from cli import nh

REPO = Path(__file__).resolve().parent.parent


def test_help_lists_every_command():
    out = CliRunner().invoke(nh, ["--help"]).output
    for name in ("data", "physics", "train", "eval", "tune", "demo"):
        assert f"  {name} " in out, name
    out = CliRunner().invoke(nh, ["data", "--help"]).output
    for name in ("build", "info", "validate"):
        assert f"  {name} " in out, name


def test_unusable_output_path_is_one_line_exit_2(tmp_path):
    # /proc cannot hold new folders, even for root (chmod does not stop root)
    r = subprocess.run(
        [sys.executable, str(REPO / "cli.py"), "data", "build", "--n", "3", "--out", "/proc/nh_no/x", "--quiet"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: cannot use /proc/nh_no"), r.stderr


def test_unknown_command_exits_2():
    r = CliRunner().invoke(nh, ["frobnicate"])
    assert r.exit_code == 2
    assert "No such command" in r.output


def test_usage_errors_of_every_command_are_one_line():
    cases = [
        (["train", "deeponet", "--epochs", "abc"], "Error: nh train: Invalid value for '--epochs'"),
        (["data", "build", "--n", "x"], "Error: nh data build: Invalid value for '--n'"),
        (["physics"], "Error: nh physics: Missing argument 'NAME'"),
        (["tune", "deeponet"], "Error: nh tune: Missing option '--trials'"),
        (["eval"], "Error: nh eval: Missing argument"),
    ]
    for args, start in cases:
        r = CliRunner().invoke(nh, args)
        assert r.exit_code == 2, (args, r.output)
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(start), (args, r.output)
