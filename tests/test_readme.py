"""The README's code blocks run as written (issue 24, 6), and it and scripts/demo.sh give the
demo's duration the same way (4).

Python blocks run in a fresh folder, with only the sizes shrunk (SHRINK: each one must still
be in the README, so an edit of the block shows up here). Bash blocks pass `bash -n`; every
`nh` (or `cli.py`) line names a real sub-command and parses as its options and arguments
(click's own parser, nothing run), and its `--help` works; other lines name what exists."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from cli import nh

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
#: README text -> what the test runs instead: the same calls at a size of seconds
SHRINK = {
    'build_dataset("parquet_data/1000", 1000, workers=2)':
        'build_dataset("parquet_data/1000", 16, workers=1, shard_size=4, progress=False)',
}  # fmt: skip


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def test_every_block_is_python_or_bash():
    openers = re.findall(r"^```(\w*)$", README, re.M)[0::2]  # fences open and close in turn
    assert sorted(set(openers)) == ["bash", "python"]
    assert len(openers) == len(blocks("python")) + len(blocks("bash")) >= 4


def test_python_blocks_run_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths (configs/...) resolve as from any folder
    (code,) = blocks("python")
    for text, small in SHRINK.items():
        assert text in code, f"README no longer has {text!r}: update SHRINK"
        code = code.replace(text, small)
    ns: dict = {"__name__": "__readme__"}
    exec(compile(code, str(ROOT / "README.md"), "exec"), ns)
    assert ns["manifest"]["counts"]["train"] > 0 and ns["metrics"]["best_val_loss"] > 0
    assert ns["cfg"]["train"]["epochs"] == 20  # load_run: the small recipe the run trained
    q, p, bands = ns["q"], ns["p"], ns["bands"]
    assert q.shape == p.shape == (300,) and np.isfinite(q).all() and np.isfinite(p).all()
    assert bands is not None and bands.q_lo.shape == (300,) and bands.windows == 3 and bands.calibrated.all()
    assert ns["qs"].shape == (2, 300)  # a batch


def _nh_lines() -> list[list[str]]:
    """The argument lists after `nh` (or `cli.py`) of every command line in the bash blocks."""
    out = []
    for block in blocks("bash"):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            for start in ("nh", "cli.py"):
                if start in words:
                    out.append(words[words.index(start) + 1 :])
    return out


def test_bash_blocks_parse_and_their_nh_commands_exist():
    for block in blocks("bash"):
        r = subprocess.run(["bash", "-n"], input=block, capture_output=True, text=True)
        assert r.returncode == 0, (block, r.stderr)
    lines = _nh_lines()
    assert len(lines) >= 20
    used = set()
    for args in lines:
        cmd, path, rest = nh, [], list(args)
        while isinstance(cmd, click.Group):
            if not rest and cmd.invoke_without_command:  # `nh models`: the group itself runs
                break
            cmd = cmd.commands[rest[0]]  # a KeyError names a sub-command that does not exist
            path.append(rest.pop(0))
        used.add(" ".join(path))
        cmd.make_context(" ".join(["nh", *path]), rest)  # click.UsageError: an unknown option or bad value
    for path in sorted(used):
        res = CliRunner().invoke(nh, [*path.split(), "--help"])
        assert res.exit_code == 0 and "Usage: nh " in res.output, path
    assert {"data build", "train", "tune", "predict", "eval", "demo"} <= used


def test_other_bash_lines_name_what_exists():
    text = " ".join(blocks("bash"))
    assert "bash scripts/demo.sh" in text
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / "demo.sh")]).returncode == 0
    extras = re.search(r'pip install -e "\.\[([\w,]+)\]"', text).group(1).split(",")
    pyproject = (ROOT / "pyproject.toml").read_text()
    for extra in extras:
        assert re.search(rf"^{extra} = \[", pyproject, re.M), extra


def test_readme_and_demo_script_give_the_demo_time_the_same_way():
    said = re.compile(r"about ([\d.]+) minutes for the demo, ([\d.]+) with the install, on (\d) cores")
    readme = said.findall(" ".join(README.split()))
    script = said.findall(" ".join((ROOT / "scripts" / "demo.sh").read_text().replace("#", " ").split()))
    assert readme == script == [("2.5", "3.5", "2")]
    assert "two to three" not in README and (ROOT / "scripts" / "demo.sh").read_text().count("minute") == 1


@pytest.mark.parametrize("args", [["train", "deeponet", "--no-such-option"], ["frobnicate"]])
def test_the_command_check_can_fail(args):
    """What the bash check relies on: an unknown option or sub-command is caught without running."""
    with pytest.raises((click.UsageError, KeyError)):
        cmd, rest = nh, list(args)
        while isinstance(cmd, click.Group):
            cmd = cmd.commands[rest.pop(0)]
        cmd.make_context("nh", rest)
