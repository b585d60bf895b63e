"""Host and process figures for ``GET /admin/system``: uptime, CPU, memory, disk, GPU memory.

Modelled on the Hyper AI Gateway's health stats (``cpu_percent``, ``memory_percent``,
``disk_usage``), with the byte counts an operator needs to size a box. Blocking (folder walks,
``nvidia-smi``): call it from a worker thread.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil

_NVIDIA_SMI_TIMEOUT_S = 3.0


class SystemMonitor:
    """Holds the process handle so CPU percentages cover the time since the previous call
    (psutil's first reading is meaningless, so the constructor takes it)."""

    def __init__(self, started_at: float | None = None) -> None:
        self.started_at = time.time() if started_at is None else started_at
        self._process = psutil.Process()
        self._process.cpu_percent(None)
        psutil.cpu_percent(None)

    def snapshot(self, folders: dict[str, Path]) -> dict[str, Any]:
        uptime_s = time.time() - self.started_at
        memory = psutil.virtual_memory()
        return {
            "uptime_s": round(uptime_s, 1),
            "uptime": _clock(uptime_s),
            "started_at": round(self.started_at, 3),
            "cpu": {"count": psutil.cpu_count(), "percent": psutil.cpu_percent(None),
                    "process_percent": self._process.cpu_percent(None)},
            "memory": {"process_rss_bytes": self._process.memory_info().rss,
                       "total_bytes": memory.total, "available_bytes": memory.available,
                       "percent": memory.percent},
            "disk": {name: folder_stats(path) for name, path in folders.items()},
            "gpus": gpu_memory(),
        }


def _clock(seconds: float) -> str:
    """``HH:MM:SS`` (hours may pass 24), as the gateway's ``uptime``."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"


def folder_size(path: Path) -> int:
    """Bytes of the files under ``path``; linked files count, linked folders are not walked."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size
            except OSError:  # removed while walking, or a dangling link
                continue
    return total


def folder_stats(path: Path) -> dict[str, Any]:
    """The folder's own size and its file system's use (of the nearest existing parent while
    the folder does not exist yet)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    return {"path": str(path), "exists": path.exists(),
            "size_bytes": folder_size(path) if path.is_dir() else 0,
            "disk_total_bytes": usage.total, "disk_used_bytes": usage.used,
            "disk_free_bytes": usage.free,
            "disk_percent": round(100 * usage.used / usage.total, 1) if usage.total else 0.0}


def gpu_memory() -> list[dict[str, Any]] | None:
    """Per NVIDIA GPU: name and memory, from ``nvidia-smi``; None where there is none."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=index,name,memory.used,memory.total",
             "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=_NVIDIA_SMI_TIMEOUT_S, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    gpus = []
    for line in out.strip().splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 4:
            continue
        try:
            index, used, total = int(fields[0]), int(fields[2]), int(fields[3])
        except ValueError:  # "[N/A]" on some boards
            continue
        gpus.append({"index": index, "name": fields[1], "memory_used_bytes": used * 1024 ** 2,
                     "memory_total_bytes": total * 1024 ** 2})
    return gpus or None
