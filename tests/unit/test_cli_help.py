"""Every command's --help prints its usage and exits 0 (`hugind bench --help` used to fail)."""

from __future__ import annotations

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
