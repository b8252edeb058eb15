"""Settings: a TOML file for everything but secrets, the environment for secrets.

Every key is documented in ``config.example.toml``. Durations accept a number of
seconds or an ISO 8601 duration (``"PT24H"``, ``"P30D"``). Loading fails with a
``ConfigError`` whose message is one line naming the file, the key and the
problem; the CLI prints it and exits non-zero.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

from bridge.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    api_key_header: str = "X-API-Key"
    max_body_bytes: int = Field(1_048_576, ge=1024)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: bool = True
    shutdown_grace_seconds: float = Field(10.0, ge=0)


class StoreSettings(_Section):
    path: Path = Path("var/crm-bridge.sqlite3")
    retention: timedelta = timedelta(days=30)
    synchronous: Literal["normal", "full"] = "normal"


class CrmSettings(_Section):
    backend: Literal["local", "hubspot", "salesforce"] = "local"
    deadline_seconds: float = Field(10.0, gt=0)
    when_unavailable: Literal["fail", "accept"] = "fail"
    connect_timeout: float = Field(5.0, gt=0)
    read_timeout: float = Field(30.0, gt=0)


class OutboxSettings(_Section):
    max_age: timedelta = timedelta(hours=24)
    backoff_max_seconds: float = Field(300.0, gt=0)
    poll_seconds: float = Field(1.0, gt=0)
    max_in_memory: int = Field(20_000, ge=1)


class LocalSettings(_Section):
    path: Path = Path("var/crm-bridge-local.sqlite3")


class HubSpotSettings(_Section):
    base_url: str = "https://api.hubapi.com"
    requests_per_10s: int = Field(100, ge=1)
    max_concurrency: int = Field(10, ge=1)
    batch_size: int = Field(100, ge=1, le=100)
    dedupe_property: str = ""
    dedupe_settle_seconds: float = Field(5.0, ge=0)
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("is not a known time zone") from None
        return value


class SalesforceSettings(_Section):
    auth: Literal["access_token", "client_credentials", "jwt"] = "access_token"
    instance_url: str = ""
    domain: str = "login"
    username: str = ""
    jwt_audience: str = ""
    api_version: str = Field("62.0", pattern=r"^\d+\.\d$")
    ca_bundle: Path | None = None
    external_id_field: str = Field("", pattern=r"^([A-Za-z][A-Za-z0-9_]*__c)?$")
    task_status: str = "Completed"
    email_subtype: str = "Email"
    linkedin_subtype: str = "LinkedIn"
    max_concurrency: int = Field(10, ge=1)
    batch_size: int = Field(200, ge=1, le=200)
    daily_budget_share: float = Field(0.9, gt=0, le=1)

    @field_validator("ca_bundle", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def login_url(self) -> str:
        """The OAuth host: ``login``, ``test`` or ``acme.my`` name a Salesforce
        domain; a full ``https://`` URL (a proxy, a test server) is used as is."""
        if "://" in self.domain:
            return self.domain.rstrip("/")
        return f"https://{self.domain}.salesforce.com"

    @property
    def audience(self) -> str:
        """The JWT ``aud``: sandboxes sign in at test, everything else at login."""
        if self.jwt_audience:
            return self.jwt_audience
        if self.domain == "test":
            return "https://test.salesforce.com"
        return "https://login.salesforce.com"


class Secrets(BaseModel):
    """Secrets, read from the environment only."""

    model_config = ConfigDict(frozen=True)

    api_keys: tuple[SecretStr, ...] = ()
    hubspot_access_token: SecretStr | None = None
    salesforce_access_token: SecretStr | None = None
    salesforce_consumer_key: SecretStr | None = None
    salesforce_consumer_secret: SecretStr | None = None
    salesforce_private_key_file: Path | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Secrets:
        def secret(name: str) -> SecretStr | None:
            value = environ.get(name, "").strip()
            return SecretStr(value) if value else None

        keys = environ.get("CRM_BRIDGE_API_KEYS", "")
        key_file = environ.get("SALESFORCE_PRIVATE_KEY_FILE", "").strip()
        return cls(
            api_keys=tuple(SecretStr(k.strip()) for k in keys.split(",") if k.strip()),
            hubspot_access_token=secret("HUBSPOT_ACCESS_TOKEN"),
            salesforce_access_token=secret("SALESFORCE_ACCESS_TOKEN"),
            salesforce_consumer_key=secret("SALESFORCE_CONSUMER_KEY"),
            salesforce_consumer_secret=secret("SALESFORCE_CONSUMER_SECRET"),
            salesforce_private_key_file=Path(key_file) if key_file else None,
        )


class Settings(_Section):
    """The whole configuration: the file's sections plus the secrets."""

    server: ServerSettings = ServerSettings()
    store: StoreSettings = StoreSettings()
    crm: CrmSettings = CrmSettings()
    outbox: OutboxSettings = OutboxSettings()
    local: LocalSettings = LocalSettings()
    hubspot: HubSpotSettings = HubSpotSettings()
    salesforce: SalesforceSettings = SalesforceSettings()
    secrets: Secrets = Secrets()


def load(path: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read ``path`` and the environment; raise ``ConfigError`` on any problem."""
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    if "secrets" in data:
        raise ConfigError(f"{path}: secrets come from the environment, not the file")

    secrets = Secrets.from_environ(os.environ if environ is None else environ)
    try:
        settings = Settings.model_validate({**data, "secrets": secrets})
    except ValidationError as error:
        raise ConfigError(f"{path}: {_first_problem(error)}") from None
    settings = _resolve_paths(settings, path.absolute().parent)
    _check_secrets(settings)
    return settings


def _first_problem(error: ValidationError) -> str:
    item = error.errors(include_url=False, include_input=False)[0]
    *sections, key = [str(part) for part in item["loc"]] or ["?"]
    where = f"[{'.'.join(sections)}] {key}" if sections else f"[{key}]"
    if item["type"] == "extra_forbidden":
        return f"{where}: unknown key"
    return f"{where}: {item['msg'].removeprefix('Value error, ')}"


def _check_secrets(settings: Settings) -> None:
    secrets = settings.secrets
    if not secrets.api_keys:
        raise ConfigError("CRM_BRIDGE_API_KEYS is not set: the bridge never serves")
    backend = settings.crm.backend
    if backend == "hubspot" and secrets.hubspot_access_token is None:
        raise ConfigError("HUBSPOT_ACCESS_TOKEN is not set (crm.backend = hubspot)")
    if backend == "salesforce":
        _check_salesforce(settings.salesforce, secrets)


def _check_salesforce(sf: SalesforceSettings, secrets: Secrets) -> None:
    needed: dict[str, object] = {}
    if sf.auth == "access_token":
        needed = {
            "SALESFORCE_ACCESS_TOKEN": secrets.salesforce_access_token,
            "[salesforce] instance_url": sf.instance_url or None,
        }
    elif sf.auth == "client_credentials":
        needed = {
            "SALESFORCE_CONSUMER_KEY": secrets.salesforce_consumer_key,
            "SALESFORCE_CONSUMER_SECRET": secrets.salesforce_consumer_secret,
        }
    else:
        needed = {
            "SALESFORCE_CONSUMER_KEY": secrets.salesforce_consumer_key,
            "SALESFORCE_PRIVATE_KEY_FILE": secrets.salesforce_private_key_file,
            "[salesforce] username": sf.username or None,
        }
    missing = [name for name, value in needed.items() if value is None]
    if missing:
        raise ConfigError(f"{missing[0]} is not set (salesforce auth = {sf.auth})")
    key_file = secrets.salesforce_private_key_file
    if sf.auth == "jwt" and key_file is not None and not key_file.is_file():
        raise ConfigError(f"SALESFORCE_PRIVATE_KEY_FILE: {key_file} is not a file")
    if sf.ca_bundle is not None and not sf.ca_bundle.is_file():
        raise ConfigError(f"[salesforce] ca_bundle: {sf.ca_bundle} is not a file")


def _resolve_paths(settings: Settings, base: Path) -> Settings:
    """Relative paths in the file are relative to the file, not to the cwd."""
    ca_bundle = settings.salesforce.ca_bundle
    return settings.model_copy(
        update={
            "store": settings.store.model_copy(
                update={"path": base / settings.store.path}
            ),
            "local": settings.local.model_copy(
                update={"path": base / settings.local.path}
            ),
            "salesforce": settings.salesforce.model_copy(
                update={"ca_bundle": base / ca_bundle if ca_bundle else None}
            ),
        }
    )
