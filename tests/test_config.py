from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from bridge import cli, config
from bridge.errors import ConfigError

ENV = {"CRM_BRIDGE_API_KEYS": "k1, k2 ,", "HUBSPOT_ACCESS_TOKEN": "pat-1"}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(text)
    return path


def test_load_example_config_gives_documented_defaults() -> None:
    settings = config.load(Path("config.example.toml"), {"CRM_BRIDGE_API_KEYS": "k"})

    assert settings.crm.backend == "local"
    assert settings.server.api_key_header == "X-API-Key"
    assert settings.server.max_body_bytes == 1_048_576
    assert settings.store.retention == timedelta(days=30)
    assert settings.outbox.max_age == timedelta(hours=24)
    assert settings.store.path == Path("var/crm-bridge.sqlite3").absolute()
    assert settings.salesforce.ca_bundle is None


def test_load_reads_secrets_from_environment_only(tmp_path: Path) -> None:
    path = write(tmp_path, '[crm]\nbackend = "hubspot"\n')

    settings = config.load(path, ENV)

    keys = [key.get_secret_value() for key in settings.secrets.api_keys]
    assert keys == ["k1", "k2"]
    assert settings.secrets.hubspot_access_token is not None
    assert "pat-1" not in repr(settings)


def test_load_resolves_relative_paths_against_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[store]\npath = "data/j.sqlite3"\n')

    settings = config.load(path, ENV)

    assert settings.store.path == tmp_path / "data" / "j.sqlite3"


@pytest.mark.parametrize(
    ("text", "environ", "message"),
    [
        ("[server]\nprot = 1\n", ENV, r"\[server\] prot: unknown key"),
        ("[nonsense]\n", ENV, r"\[nonsense\]: unknown key"),
        ('[crm]\nbackend = "pipedrive"\n', ENV, r"\[crm\] backend: Input should be"),
        ("[server]\nport = 99999\n", ENV, r"\[server\] port: Input should be less"),
        ('[outbox]\nmax_age = "soon"\n', ENV, r"\[outbox\] max_age:"),
        ('[hubspot]\ntimezone = "Mars/Base"\n', ENV, "not a known time zone"),
        ("[crm\n", ENV, "not valid TOML"),
        ("", {}, "CRM_BRIDGE_API_KEYS is not set"),
        ('[crm]\nbackend = "hubspot"\n', {"CRM_BRIDGE_API_KEYS": "k"}, "HUBSPOT_ACC"),
        (
            '[crm]\nbackend = "salesforce"\n',
            {"CRM_BRIDGE_API_KEYS": "k", "SALESFORCE_ACCESS_TOKEN": "t"},
            r"\[salesforce\] instance_url is not set",
        ),
        (
            '[crm]\nbackend = "salesforce"\n[salesforce]\nauth = "jwt"\n',
            {"CRM_BRIDGE_API_KEYS": "k"},
            "SALESFORCE_CONSUMER_KEY is not set",
        ),
        (
            '[crm]\nbackend = "salesforce"\n[salesforce]\nauth = "client_credentials"'
            '\nca_bundle = "missing.pem"\n',
            {
                "CRM_BRIDGE_API_KEYS": "k",
                "SALESFORCE_CONSUMER_KEY": "c",
                "SALESFORCE_CONSUMER_SECRET": "s",
            },
            "ca_bundle: .*missing.pem is not a file",
        ),
        ('[secrets]\napi_keys = "k"\n', ENV, "secrets come from the environment"),
    ],
)
def test_load_bad_config_raises_one_line(
    tmp_path: Path, text: str, environ: dict[str, str], message: str
) -> None:
    path = write(tmp_path, text)

    with pytest.raises(ConfigError, match=message) as raised:
        config.load(path, environ)

    assert "\n" not in str(raised.value)


def test_load_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nowhere\.toml: cannot read"):
        config.load(tmp_path / "nowhere.toml", ENV)


def test_cli_config_error_prints_one_line_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CRM_BRIDGE_API_KEYS", raising=False)
    path = write(tmp_path, "")

    status = cli.main(["serve", "--config", str(path)])

    captured = capsys.readouterr()
    assert status == 2
    assert captured.err == (
        "crm-bridge: CRM_BRIDGE_API_KEYS is not set: the bridge never serves\n"
    )
    assert captured.out == ""


def test_salesforce_login_url_accepts_names_and_urls() -> None:
    named = config.SalesforceSettings(domain="acme.my")
    sandbox = config.SalesforceSettings(domain="test")
    proxy = config.SalesforceSettings(domain="https://sso.example.com/")

    assert named.login_url == "https://acme.my.salesforce.com"
    assert (sandbox.login_url, sandbox.audience) == (
        "https://test.salesforce.com",
        "https://test.salesforce.com",
    )
    assert (proxy.login_url, proxy.audience) == (
        "https://sso.example.com",
        "https://login.salesforce.com",
    )
