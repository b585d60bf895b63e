from __future__ import annotations

import argparse
import os
from pathlib import Path

from bench.memory import _config, vm_rss_bytes

from hugind.config import parse_config


def test_vm_rss_reads_this_process() -> None:
    rss = vm_rss_bytes(os.getpid())
    assert 10 * 2**20 < rss < 64 * 2**30


def test_generated_config_is_valid_hugind_config(tmp_path: Path) -> None:
    args = argparse.Namespace(ctx_size=2048, parallel=4, ram_budget_mb=64, disk_budget_mb=512)
    raw = _config("/models/x.gguf", args, tmp_path / "sessions")
    cfg = parse_config(raw)
    assert cfg.models[0].parallel == 4
    assert cfg.sessions.ram_budget_mb == 64
