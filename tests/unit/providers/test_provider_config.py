from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from hugind.cli import main
from hugind.config import ConfigError, load_config, parse_config


def provider(**extra: object) -> dict[str, object]:
    return {"providers": [{"name": "p", "base_url": "http://x/v1", **extra}]}


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"endpoints": ["/v1/chat/completions"]},
         "providers[0].endpoints[0]: '/v1/chat/completions' is served"),
        ({"endpoints": ["images", "embeddings"]}, "providers[0].endpoints[1]: 'embeddings' is"),
        ({"timeout": {"read_s": 0}}, "providers[0].timeout.read_s: expected float > 0.0, got 0"),
        ({"cooldown_s": -1}, "providers[0].cooldown_s: expected float >= 0.0, got -1"),
        ({"max_retries": "two"}, "providers[0].max_retries: expected int, got 'two'"),
        ({"modles": ["x"]}, "providers[0].modles: unknown key"),
        ({"name": ""}, "providers[0].name: expected str of length >= 1"),
        ({"models": ["gpt-4o", " "]}, "providers[0].models[1]: is empty"),
        ({"base_url": "api.openai.com"}, "providers[0].base_url"),
        ({"base_url": "http://x/v1/../admin"},
         "providers[0].base_url: must not hold a query, a fragment or '.'/'..' segments"),
        ({"base_url": "http://x/v1?api-version=1"}, "providers[0].base_url: must not hold"),
        ({"backoff_s": -0.1}, "providers[0].backoff_s: expected float >= 0.0, got -0.1"),
        ({"backoff_s": 1, "backoff_max_s": 0.5},
         "providers[0].backoff_max_s: 0.5 is below backoff_s (1)"),
        ({"retry_reads": "yes"}, "providers[0].retry_reads: expected bool, got 'yes'"),
        ({"breaker_failures": 0}, "providers[0].breaker_failures: expected int >= 1, got 0"),
        ({"breaker_open_s": -1}, "providers[0].breaker_open_s: expected float >= 0.0, got -1"),
    ],
)
def test_bad_provider_sections_name_the_key(extra: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(provider(**extra))
    assert fragment in str(info.value)


def test_defaults() -> None:
    p = parse_config(provider(models=["openai/"], endpoints=["/v1/images/*"])).providers[0]
    assert (p.max_retries, p.cooldown_s, p.timeout.connect_s, p.timeout.read_s) == (2, 60, 10, 600)
    assert (p.backoff_s, p.backoff_max_s, p.retry_reads, p.breaker_failures,
            p.breaker_open_s) == (0.25, 2, False, None, 10)


@pytest.mark.parametrize(("n_keys", "breaker_failures", "threshold"),
                         [(1, None, 3), (5, None, 5), (5, 2, 2)])
def test_breaker_threshold_defaults_to_the_number_of_keys(
    n_keys: int, breaker_failures: int | None, threshold: int,
) -> None:
    from hugind.providers import ProviderRouter

    keys = [f"sk-test-key-number-{i:04d}" for i in range(n_keys)]
    config = parse_config(provider(api_keys=keys, breaker_failures=breaker_failures))
    router = ProviderRouter(config.providers)
    assert router.providers[0].breaker.threshold == threshold
    asyncio.run(router.aclose())


SECRET = "sk-live-NEVERPRINTNEVERPRINT-9z9z"


@pytest.mark.parametrize(
    ("section", "fragment"),
    [
        ({"api_keys": SECRET}, "providers[0].api_keys: expected array, got str"),
        ({"headers": {"api-key": 12345678901234567}},
         "providers[0].headers[...]: expected str, got int"),
        ({"api_keys": ["  "]}, "providers[0].api_keys[0]: is empty (is its environment"),
        ({"api_keys": ["${HUGIND_TEST_UNSET_PROVIDER_KEY}"]},
         "providers[0].api_keys[0]: environment variable HUGIND_TEST_UNSET_PROVIDER_KEY"),
    ],
)
def test_key_errors_never_echo_the_value(section: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(provider(**section))
    assert fragment in str(info.value)
    assert SECRET not in str(info.value)


def test_provider_names_are_unique() -> None:
    data = {"providers": [{"name": "p", "base_url": "http://x/v1"},
                          {"name": "p", "base_url": "http://y/v1"}]}
    with pytest.raises(ConfigError, match=r"^providers\[1\]\.name: 'p' is used twice$"):
        parse_config(data)


def test_server_api_keys_are_not_echoed_either() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"server": {"api_keys": SECRET}})
    assert str(info.value) == "server.api_keys: expected array, got str"


def test_keys_from_env_and_files_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUGIND_TEST_PROVIDER_KEY", "env-key-0000000001")
    keys = tmp_path / "keys.txt"
    keys.write_text("# rotated weekly\n\nfile-key-000000002\n  file-key-000000003  \n")
    p = parse_config(provider(api_keys=["${HUGIND_TEST_PROVIDER_KEY}"],
                              api_key_files=[str(keys)])).providers[0]
    assert p.all_api_keys() == ["env-key-0000000001", "file-key-000000002", "file-key-000000003"]


def write_config(tmp_path: Path, **section: object) -> Path:
    path = tmp_path / "hugind.yaml"
    path.write_text(yaml.safe_dump(provider(**section)))
    return path


def test_key_files_are_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "p.keys").write_text("file-key-000000002\n")
    config = load_config(write_config(tmp_path, api_key_files=["secrets/p.keys"]))
    p = config.providers[0]
    assert p.api_key_files == [str(tmp_path / "secrets" / "p.keys")]
    assert p.all_api_keys() == ["file-key-000000002"]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "providers[0].api_key_files[0]: cannot read key file"),
        ("# only a comment\n\n", "providers[0].api_key_files[0]: key file"),
    ],
)
def test_check_rejects_missing_or_empty_key_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, fragment: str,
) -> None:
    keys = tmp_path / "p.keys"
    if content is not None:
        keys.write_text(content)
    path = write_config(tmp_path, api_key_files=[str(keys)])
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "p.keys" in err
    assert err.count("\n") == 1
    with pytest.raises(ConfigError, match=r"api_key_files\[0\]"):
        load_config(path)


def test_check_prints_providers_without_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HUGIND_TEST_PROVIDER_KEY", SECRET)
    (tmp_path / "p.keys").write_text(f"{SECRET}-2\n{SECRET}-3\n")
    path = write_config(tmp_path, api_keys=["${HUGIND_TEST_PROVIDER_KEY}"],
                        api_key_files=["p.keys"], models=["gpt-4o", "openai/"],
                        endpoints=["images", "audio/*"], cooldown_s=30)
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert ("provider p: http://x/v1, 3 key(s) (1 key file(s)), models [gpt-4o, openai/], "
            "endpoints [images, audio/*], timeout connect 10s read 600s, max_retries 2, "
            "cooldown 30s") in out
    assert SECRET[-8:] not in out


def test_router_names_a_key_file_gone_since_the_config_was_loaded(tmp_path: Path) -> None:
    from hugind.providers import ProviderRouter

    config = parse_config({"providers": [
        {"name": "a", "base_url": "http://x/v1"},
        {"name": "b", "base_url": "http://y/v1", "api_key_files": [str(tmp_path / "gone")]},
    ]})
    with pytest.raises(ConfigError, match=r"^providers\[1\]\.api_key_files\[0\]: cannot read"):
        ProviderRouter(config.providers)
