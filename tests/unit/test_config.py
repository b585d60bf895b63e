from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hugind.config import Config, ConfigError, load_config, parse_config

MODEL = {"id": "m", "path": "/x.gguf"}


def err(data: object) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return str(info.value)


def test_default_config_is_valid() -> None:
    config = load_config(Path(__file__).parents[2] / "config" / "default.yaml")
    assert [m.id for m in config.models] == ["gemma-3-270m", "gemma-3-270m-embed"]
    assert config.models[1].embedding


@pytest.mark.parametrize(("data", "expected"), [
    ({"models": [MODEL, {**MODEL, "id": "n", "n_ctx": "big"}]},
     "models[1].n_ctx: expected int, got 'big'"),
    ({"models": [{**MODEL, "n_ctx": 10}]}, "models[0].n_ctx: expected int >= 256, got 10"),
    ({"models": [{"id": "m"}]}, "models[0]: needs exactly one source"),
    ({"models": [{**MODEL, "hf": {"repo": "a/b", "file": "c"}}]},
     "models[0]: needs exactly one source: path, hf or package (got path, hf)"),
    ({"models": [{**MODEL, "colour": "red"}]}, "models[0].colour: unknown key"),
    ({"server": {"prot": 1}}, "server.prot: unknown key"),
    ({"server": {"port": 70000}}, "server.port: expected int <= 65535, got 70000"),
    ({"models": [{**MODEL, "device": "tpu"}]}, "models[0].device: invalid enum value 'tpu'"),
    ({"models": [{"path": "/x"}]}, "models[0].id: is required"),
    ({"models": [MODEL, MODEL]}, "models[1]: name 'm' is already used by models[0]"),
    ({"models": [{**MODEL, "hf": None, "path": None, "package": None}]}, "exactly one source"),
    ({"server": {"api_keys": ["${HUGIND_TEST_UNSET_VAR}"]}},
     "server.api_keys[0]: environment variable HUGIND_TEST_UNSET_VAR is not set"),
    ({"providers": [{"name": "p", "base_url": "ftp://x"}]}, "providers[0].base_url"),
    ([1, 2], "the top level must be a mapping"),
    ({"models": [{**MODEL, "n_batch": 16}]}, "models[0].n_batch: expected int >= 32, got 16"),
    ({"models": [{**MODEL, "n_batch": 64, "parallel": 60}]},
     "models[0]: parallel (60) must leave 16 tokens of n_batch (64) for prompts: at most 48"),
])
def test_errors_name_the_key(data: object, expected: str) -> None:
    assert expected in err(data)


def test_env_expansion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUGIND_TEST_KEY", "s3cret")
    config = parse_config({"server": {"api_keys": ["${HUGIND_TEST_KEY}"],
                                      "host": "${HUGIND_TEST_HOST:-0.0.0.0}"}})
    assert config.server.api_keys == ["s3cret"]
    assert config.server.host == "0.0.0.0"


def test_yaml_errors_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [\n  - id: x\n")
    with pytest.raises(ConfigError, match="invalid YAML at line"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")


def test_cli_check_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"models": [{"id": "m", "path": "/x", "n_ctx": "big"}]}))
    r = subprocess.run([sys.executable, "-m", "hugind", "check", str(cfg)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0
    assert "models[0].n_ctx" in r.stderr and "Traceback" not in r.stderr


def test_cli_check_and_models_on_default() -> None:
    root = Path(__file__).parents[2]
    r = subprocess.run([sys.executable, "-m", "hugind", "check", "config/default.yaml"],
                       capture_output=True, text=True, timeout=60, cwd=root)
    assert r.returncode == 0, r.stderr
    assert "model gemma-3-270m" in r.stdout
    r = subprocess.run([sys.executable, "-m", "hugind", "models", "config/default.yaml"],
                       capture_output=True, text=True, timeout=60, cwd=root)
    assert r.returncode == 0 and "gemma-3-270m-embed\tembed" in r.stdout
    r = subprocess.run([sys.executable, "-m", "hugind", "--version"], capture_output=True,
                       text=True, timeout=60)
    assert r.stdout.startswith("hugind ")


YAML_SCALARS = st.none() | st.booleans() | st.integers(-5, 100000) | st.floats(
    allow_nan=False) | st.text(max_size=10)
YAML_VALUES = st.recursive(
    YAML_SCALARS,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(
        st.sampled_from(["id", "path", "n_ctx", "port", "api_keys", "models", "server",
                         "device", "hf", "repo", "file", "embedding", "x"]), c, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(data=st.dictionaries(st.sampled_from(["server", "models", "sessions", "providers",
                                             "models_dir", "extra"]), YAML_VALUES, max_size=4))
def test_any_mapping_gives_config_or_config_error(data: dict[str, object]) -> None:
    try:
        assert isinstance(parse_config(data), Config)
    except ConfigError as exc:
        assert str(exc) and "Traceback" not in str(exc)
