from __future__ import annotations

import pytest

from hugind.config import ConfigError, parse_config


def provider(**extra: object) -> dict[str, object]:
    return {"providers": [{"name": "p", "base_url": "http://x/v1", **extra}]}


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"endpoints": ["/v1/chat/completions"]}, "endpoints[0]: '/v1/chat/completions' is served"),
        ({"endpoints": ["images", "embeddings"]}, "endpoints[1]: 'embeddings' is served"),
        ({"models": ["gpt-4o", " "]}, "models[1] is empty"),
        ({"base_url": "api.openai.com"}, "providers[0].base_url"),
    ],
)
def test_bad_provider_sections_name_the_key(extra: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(provider(**extra))
    assert fragment in str(info.value)


def test_defaults() -> None:
    p = parse_config(provider(models=["openai/"], endpoints=["/v1/images/*"])).providers[0]
    assert (p.max_retries, p.cooldown_s, p.timeout.connect_s, p.timeout.read_s) == (2, 60, 10, 600)
