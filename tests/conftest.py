"""Shared fixtures: settings written as real TOML files, the app under a test
client, and the CRM fakes served over real HTTP (Salesforce over TLS)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from starlette.testclient import TestClient

from adapters.base import Adapter
from bridge import config
from bridge.app import create_app
from bridge.store import Entry, Store
from tests.fakes.hubspot import FakeHubSpot
from tests.fakes.server import Faults, serve

API_KEY = "test-api-key-0001"
HUBSPOT_TOKEN = "pat-na1-test"
DEDUPE_PROPERTY = "crm_bridge_key"
EXAMPLE_MESSAGE_ID = "linkedin-msg-123"
EXAMPLE_KEY = f"LINKEDIN:OUTBOUND:{EXAMPLE_MESSAGE_ID}"

SettingsFactory = Callable[..., config.Settings]
ClientFactory = Callable[..., TestClient]


@pytest.fixture
def make_settings(tmp_path: Path) -> SettingsFactory:
    """Settings from a TOML file in ``tmp_path``; sections given as dicts."""

    def make(
        environ: dict[str, str] | None = None, **sections: dict[str, Any]
    ) -> config.Settings:
        sections.setdefault("store", {})
        sections["store"].setdefault("path", str(tmp_path / "journal.sqlite3"))
        sections.setdefault("local", {"path": str(tmp_path / "local.sqlite3")})
        path = tmp_path / "config.toml"
        path.write_text(tomli_w.dumps(sections))
        env = {"CRM_BRIDGE_API_KEYS": API_KEY, "HUBSPOT_ACCESS_TOKEN": HUBSPOT_TOKEN}
        env.update(environ or {})
        return config.load(path, env)

    return make


@pytest.fixture
def make_client() -> Iterator[ClientFactory]:
    """A test client running the app's lifespan; closed at the end of the test."""
    clients: list[TestClient] = []

    def make(settings: config.Settings, adapter: Adapter | None = None) -> TestClient:
        client = TestClient(
            create_app(settings, adapter), raise_server_exceptions=False
        )
        client.headers["X-API-Key"] = API_KEY
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in reversed(clients):
        client.__exit__(None, None, None)


@pytest.fixture
def hubspot() -> Iterator[tuple[FakeHubSpot, Faults, str]]:
    """A fake HubSpot account served on 127.0.0.1: (fake, faults, base URL)."""
    fake = FakeHubSpot(tokens={HUBSPOT_TOKEN}, custom_properties={DEDUPE_PROPERTY})
    faults = Faults()
    with serve(fake, faults) as url:
        yield fake, faults, url


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` applied section by section."""
    merged = {name: dict(values) for name, values in base.items()}
    for name, values in changes.items():
        merged.setdefault(name, {}).update(values)
    return merged


def journal_entry(settings: config.Settings, key: str) -> Entry:
    """The journal row of ``key``, read from disk."""
    store = Store(settings.store.path)
    try:
        entry = store.get(key)
    finally:
        store.close()
    assert entry is not None, key
    return entry


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every log record at every level, for tests that look for leaks."""
    caplog.set_level(logging.DEBUG)
    return caplog


def example_activity(**changes: Any) -> dict[str, Any]:
    """The contract's example request, with ``changes`` applied."""
    activity: dict[str, Any] = {
        "type": "LINKEDIN",
        "subject": "[1/3] [FROM Acme Corp] John Smith",
        "body": "Hi Jane, I noticed your company is expanding...",
        "direction": "OUTBOUND",
        "ownerId": "user-123",
        "occurredAt": "2024-12-31T10:00:00Z",
        "contactId": "contact_8f3k2j",
        "companyId": "account_4k8j2m",
        "metadata": {
            "messageId": EXAMPLE_MESSAGE_ID,
            "sequenceIndex": 1,
            "sequenceMessageCount": 3,
        },
    }
    activity.update(changes)
    return activity
