"""The peers are given the very GGUF file that Hugind serves."""

from __future__ import annotations

from pathlib import Path

from bench.peers import hugind_model_path


def test_the_peers_model_is_hugind_own_file(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    config = tmp_path / "hugind.yaml"
    config.write_text(f"models:\n  - id: small\n    aliases: [tiny]\n    path: {gguf}\n")
    assert hugind_model_path(str(config), "small") == str(gguf)
    assert hugind_model_path(str(config), "tiny") == str(gguf)  # an alias names it too
    assert hugind_model_path(str(config), "other") is None
