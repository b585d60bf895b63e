"""all-MiniLM-L6-v2 (a BERT sentence encoder, non-causal) served as an embedding model: its
vectors through real HTTP ``/v1/embeddings`` equal sentence-transformers' own.

The GGUF and the reference vectors come from ``models/build_minilm_gguf.sh`` (its own venv with
torch and sentence-transformers; ``.ci/run`` runs it first). The fixture runs it when the files
are missing, so the test venv never needs torch.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from openai import OpenAI

from tests.conftest import ROOT
from tests.servers import HugindProcess

pytestmark = pytest.mark.model

BUILD = ROOT / "models" / "build_minilm_gguf.sh"
GGUF = ROOT / "models" / "all-MiniLM-L6-v2-f16.gguf"
REFERENCE = ROOT / "models" / "all-MiniLM-L6-v2-reference.json"


@pytest.fixture(scope="module")
def minilm() -> tuple[Path, dict[str, Any]]:
    """The GGUF and ``{"sentences", "vectors"}`` (sentence-transformers, L2-normalised)."""
    if not (GGUF.is_file() and REFERENCE.is_file()):
        subprocess.run(["bash", str(BUILD)], check=True, timeout=1800)
    return GGUF, json.loads(REFERENCE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def server(minilm: tuple[Path, dict[str, Any]],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[HugindProcess]:
    config = {
        "server": {"host": "127.0.0.1"},
        "models": [{"id": "minilm", "path": str(minilm[0]), "embedding": True,
                    "pooling": "mean", "n_ctx": 512}],
        "sessions": {"enabled": False},
    }
    proc = HugindProcess(config, tmp_path_factory.mktemp("hugind-minilm"), name="hugind-minilm")
    proc.start()
    yield proc
    proc.stop()


def _cosines(got: list[list[float]], want: list[list[float]]) -> np.ndarray:
    a, b = np.asarray(got), np.asarray(want)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def test_vectors_equal_sentence_transformers(server: HugindProcess,
                                             minilm: tuple[Path, dict[str, Any]]) -> None:
    ref = minilm[1]
    assert len(ref["sentences"]) == 100
    client = OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    r = client.embeddings.create(model="minilm", input=ref["sentences"])
    assert [d.index for d in r.data] == list(range(100))
    got = [d.embedding for d in r.data]
    assert {len(v) for v in got} == {384}
    assert np.allclose(np.linalg.norm(np.asarray(got), axis=1), 1.0, atol=1e-4)  # L2-normalised
    cos = _cosines(got, ref["vectors"])
    worst = int(np.argmin(cos))
    assert cos.min() >= 0.999, (ref["sentences"][worst], float(cos[worst]))
    assert r.usage.prompt_tokens > 100  # [CLS] ... [SEP] around each sentence


def test_one_at_a_time_equals_the_batch(server: HugindProcess,
                                        minilm: tuple[Path, dict[str, Any]]) -> None:
    ref = minilm[1]
    client = OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    single = [client.embeddings.create(model="minilm", input=s).data[0].embedding
              for s in ref["sentences"][:5]]
    assert _cosines(single, ref["vectors"][:5]).min() >= 0.999


def test_longer_than_the_trained_context_is_refused(server: HugindProcess) -> None:
    client = OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    from openai import BadRequestError

    with pytest.raises(BadRequestError):
        client.embeddings.create(model="minilm", input="word " * 600)
