"""Config keys of key management: server.secret_key, server.state_dir, client_key_header."""

from __future__ import annotations

from pathlib import Path

import pytest

from hugind.config import ConfigError, parse_config
from hugind.providers.state import state_dir

P = {"name": "p", "base_url": "http://p.test/v1"}


@pytest.mark.parametrize("header", ["Authorization", "x-api-key", "Api-Key", "Cookie",
                                    "Host", "bad header", ""])
def test_client_key_header_must_be_a_free_header_name(header: str) -> None:
    with pytest.raises(ConfigError, match=r"providers\[0\]\.client_key_header"):
        parse_config({"providers": [{**P, "client_key_header": header}]})


def test_client_key_header_is_off_by_default() -> None:
    assert parse_config({"providers": [P]}).providers[0].client_key_header is None
    cfg = parse_config({"providers": [{**P, "client_key_header": "X-OpenAI-API-Key"}]})
    assert cfg.providers[0].client_key_header == "X-OpenAI-API-Key"


def test_a_short_secret_key_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config({"server": {"secret_key": "short-secret"}})
    assert str(exc.value).startswith("server.secret_key: must hold at least 16")
    assert "short-secret" not in str(exc.value)


def test_state_dir_defaults_to_the_sessions_dir(tmp_path: Path) -> None:
    assert state_dir(parse_config({"sessions": {"dir": "s"}}), tmp_path) == tmp_path / "s"
    cfg = parse_config({"server": {"state_dir": str(tmp_path / "abs")}})
    assert state_dir(cfg, Path("/elsewhere")) == tmp_path / "abs"
