"""Every command's --help prints its usage and exits 0 (`hugind bench --help` used to fail)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hugind.cli import main

COMMANDS = [
    [], ["serve"], ["check"], ["models"], ["pull"], ["bench"], ["bench", "run"],
    ["bench", "report"], ["bench", "peers"], ["bench", "memory"], ["bench", "invariance"],
    ["bench", "model-path"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "hugind")
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_usage_and_exits_0(command: list[str], flag: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*command, flag])
    assert exc.value.code == 0
    out = capsys.readouterr()
    assert "usage:" in out.out
    assert out.err == ""


def test_bench_arguments_reach_the_bench_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", "run", "--no-such-flag"])
    assert exc.value.code == 2
    assert "--no-such-flag" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["bench"], ["bench", "run"]])
def test_the_installed_command_finds_the_bench_from_the_repository_root(
        command: list[str]) -> None:
    """As a user runs it: the console script, whose sys.path does not start at the source
    tree (pytest's in-process main() hid that it failed there)."""
    script = Path(sys.executable).parent / "hugind"
    assert script.is_file(), script
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([str(script), *command, "--help"], cwd=root, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": ""})
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
