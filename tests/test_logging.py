"""Secrets and personal data pushed through failing calls reach no log record."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator

import pytest

from tests.conftest import ClientFactory, SettingsFactory, example_activity
from tests.fakes.hubspot import FakeHubSpot
from tests.fakes.salesforce import FakeSalesforce
from tests.fakes.server import Faults, Reply, serve
from tests.fakes.tls import TlsMaterial, build_tls

CANARY_KEY = "canary-api-key-5c1e0a"
CANARY_TOKEN = "canary-crm-token-93bd27"
CANARY_SECRET = "canary-client-secret-e4a1"
CANARY_SENTENCE = "The heron flies at midnight over Lisbon"
CANARY_EMAIL = "canary.person@example.com"
CANARIES = (CANARY_KEY, CANARY_TOKEN, CANARY_SECRET, CANARY_SENTENCE, CANARY_EMAIL)


def canary_activity(n: int, **ids: str) -> dict[str, object]:
    return example_activity(
        subject=f"Re: {CANARY_SENTENCE} <{CANARY_EMAIL}>",
        body=f"<p>{CANARY_SENTENCE}</p><p>Write to {CANARY_EMAIL}</p>",
        metadata={"messageId": f"canary-{n}"},
        **ids,
    )


def assert_no_canary(caplog: pytest.LogCaptureFixture) -> None:
    assert caplog.records, "the failing calls should have logged something"
    formatter = logging.Formatter("%(name)s %(message)s")
    for record in caplog.records:
        text = formatter.format(record) + repr(record.args)
        for canary in CANARIES:
            assert canary not in text, f"{canary!r} in a {record.name} record"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return build_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def hubspot_url() -> Iterator[tuple[FakeHubSpot, Faults, str]]:
    fake = FakeHubSpot(tokens={CANARY_TOKEN})
    faults = Faults()
    with serve(fake, faults) as url:
        yield fake, faults, url


def test_hubspot_failures_log_no_secret_or_message(
    hubspot_url: tuple[FakeHubSpot, Faults, str],
    make_settings: SettingsFactory,
    make_client: ClientFactory,
    all_logs: pytest.LogCaptureFixture,
) -> None:
    fake, faults, url = hubspot_url
    settings = make_settings(
        {"CRM_BRIDGE_API_KEYS": CANARY_KEY, "HUBSPOT_ACCESS_TOKEN": CANARY_TOKEN},
        crm={"backend": "hubspot", "deadline_seconds": 8, "read_timeout": 0.3},
        hubspot={"base_url": url},
    )
    client = make_client(settings)
    client.headers["X-API-Key"] = CANARY_KEY
    ids = {"contactId": "101", "companyId": "201", "ownerId": "301"}
    faults.stall_seconds = 0.6
    faults.script.extend(["error", "lost", "stall"])
    rejected = {"category": "VALIDATION_ERROR", "message": CANARY_SENTENCE}

    retried = client.post("/activities", json=canary_activity(1, **ids))
    fake.next_replies.append(Reply(400, rejected))
    refused = client.post("/activities", json=canary_activity(2, **ids))
    invalid = client.post("/activities", json={"type": CANARY_SENTENCE})
    intruder = client.get("/health", headers={"X-API-Key": CANARY_KEY + "x"})
    fake.tokens.clear()
    unauthorised = client.post("/activities", json=canary_activity(3, **ids))

    statuses = [retried, refused, invalid, intruder, unauthorised]
    assert [r.status_code for r in statuses] == [201, 422, 400, 401, 503]
    assert_no_canary(all_logs)


def test_salesforce_failures_log_no_secret_or_message(
    tls: TlsMaterial,
    make_settings: SettingsFactory,
    make_client: ClientFactory,
    all_logs: pytest.LogCaptureFixture,
) -> None:
    fake = FakeSalesforce(client_secret=CANARY_SECRET, tokens={CANARY_TOKEN})
    faults = Faults(exempt=("/services/oauth2",))
    with serve(fake, faults, tls.server_context) as url:
        fake.base_url = url
        settings = make_settings(
            {
                "CRM_BRIDGE_API_KEYS": CANARY_KEY,
                "SALESFORCE_CONSUMER_KEY": "3MVG9-test-client",
                "SALESFORCE_CONSUMER_SECRET": CANARY_SECRET,
            },
            crm={"backend": "salesforce", "deadline_seconds": 8, "read_timeout": 0.3},
            salesforce={
                "auth": "client_credentials",
                "domain": url,
                "ca_bundle": str(tls.ca_path),
            },
        )
        client = make_client(settings)
        client.headers["X-API-Key"] = CANARY_KEY
        ids = {
            "contactId": fake.contact_ids[0],
            "companyId": fake.account_ids[0],
            "ownerId": fake.user_ids[0],
        }
        faults.stall_seconds = 0.6
        faults.script.extend(["throttle", "error", "lost", "stall"])
        rejected = [{"errorCode": "X", "message": CANARY_SENTENCE}]

        retried = client.post("/activities", json=canary_activity(1, **ids))
        fake.expire_tokens()
        fake.next_replies.append(Reply(400, rejected))
        refused = client.post("/activities", json=canary_activity(2, **ids))
        fake.app = dataclasses.replace(fake.app, client_secret="rotated")
        fake.expire_tokens()
        unauthorised = client.post("/activities", json=canary_activity(3, **ids))

    statuses = [retried, refused, unauthorised]
    assert [r.status_code for r in statuses] == [201, 422, 503]
    assert_no_canary(all_logs)
