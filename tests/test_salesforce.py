"""Salesforce end to end: the app, simple-salesforce, the fake org over TLS."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.testclient import TestClient

from adapters.salesforce import SalesforceAdapter
from bridge import config
from bridge.errors import CrmError
from bridge.models import Activity, ActivityRequest
from tests.conftest import (
    EXAMPLE_KEY,
    ClientFactory,
    SettingsFactory,
    example_activity,
    journal_entry,
    merge,
)
from tests.fakes.salesforce import DEFAULT_TOKEN, FakeSalesforce
from tests.fakes.server import Faults, Reply, serve
from tests.fakes.tls import TlsMaterial, build_tls

CLIENT_ID = "3MVG9-test-client"
CLIENT_SECRET = "test-secret"
EXTERNAL_ID = "Enginy_Key__c"
CREDENTIALS = {
    "SALESFORCE_CONSUMER_KEY": CLIENT_ID,
    "SALESFORCE_CONSUMER_SECRET": CLIENT_SECRET,
}

Org = tuple[FakeSalesforce, Faults, str]
SalesforceBridge = Callable[..., tuple[TestClient, config.Settings]]


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return build_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def org(tls: TlsMaterial) -> Iterator[Org]:
    fake = FakeSalesforce(external_id_field=EXTERNAL_ID)
    faults = Faults(exempt=("/services/oauth2",))
    with serve(fake, faults, tls.server_context) as url:
        fake.base_url = url
        yield fake, faults, url


@pytest.fixture
def bridge(
    org: Org,
    tls: TlsMaterial,
    make_settings: SettingsFactory,
    make_client: ClientFactory,
) -> SalesforceBridge:
    _, _, url = org

    def make(**sections: dict[str, Any]) -> tuple[TestClient, config.Settings]:
        base = {
            "crm": {
                "backend": "salesforce",
                "deadline_seconds": 3,
                "connect_timeout": 1,
                "read_timeout": 1,
            },
            "salesforce": {
                "auth": "client_credentials",
                "domain": url,
                "ca_bundle": str(tls.ca_path),
            },
            "outbox": {"poll_seconds": 0.05, "backoff_max_seconds": 1},
        }
        settings = make_settings(CREDENTIALS, **merge(base, sections))
        return make_client(settings), settings

    return make


def data_calls(fake: FakeSalesforce) -> int:
    """Calls to the REST API, the token endpoint left out."""
    return sum(n for call, n in fake.calls.items() if "/services/data/" in call)


def ids(fake: FakeSalesforce, contact: str = "") -> dict[str, str]:
    return {
        "contactId": contact or fake.contact_ids[0],
        "companyId": fake.account_ids[0],
        "ownerId": fake.user_ids[1],
    }


def test_contract_example_becomes_a_completed_task(
    bridge: SalesforceBridge, org: Org
) -> None:
    fake, _, _ = org
    client, _ = bridge()

    response = client.post("/activities", json=example_activity(**ids(fake)))

    [(task_id, task)] = fake.tasks.items()
    assert response.status_code == 201
    assert response.json()["id"] == task_id
    assert {name: task[name] for name in task if name != "CreatedDate"} == {
        "Subject": "[1/3] [FROM Acme Corp] John Smith",
        "Description": "Hi Jane, I noticed your company is expanding...",
        "ActivityDate": "2024-12-31",
        "Status": "Completed",
        "Priority": "Normal",
        "TaskSubtype": "LinkedIn",
        "WhoId": fake.contact_ids[0],
        "WhatId": fake.account_ids[0],
        "OwnerId": fake.user_ids[1],
    }


def test_lead_contact_leaves_what_id_out(bridge: SalesforceBridge, org: Org) -> None:
    fake, _, _ = org
    client, _ = bridge()
    body = example_activity(type="EMAIL", **ids(fake, contact=fake.lead_ids[0]))

    response = client.post("/activities", json=body)

    [task] = fake.tasks.values()
    assert response.status_code == 201
    assert (task["WhoId"], task["TaskSubtype"]) == (fake.lead_ids[0], "Email")
    assert "WhatId" not in task


def test_lost_answers_never_duplicate_with_the_external_id(
    bridge: SalesforceBridge, org: Org
) -> None:
    fake, faults, _ = org
    client, settings = bridge(salesforce={"external_id_field": EXTERNAL_ID})
    faults.script.extend(["lost", "stall"])
    faults.stall_seconds = 1.5

    response = client.post("/activities", json=example_activity(**ids(fake)))

    entry = journal_entry(settings, EXAMPLE_KEY)
    [(task_id, task)] = fake.tasks.items()
    assert response.status_code == 201
    assert response.json()["id"] == task_id
    assert task[EXTERNAL_ID] == entry.key_hash
    assert (entry.attempts, entry.in_doubt_resends) == (3, 0)


def test_lost_answer_without_external_id_is_resent_and_counted(
    bridge: SalesforceBridge, org: Org
) -> None:
    fake, faults, _ = org
    client, settings = bridge()
    faults.script.append("lost")

    response = client.post("/activities", json=example_activity(**ids(fake)))

    assert response.status_code == 201
    assert len(fake.tasks) == 2
    assert journal_entry(settings, EXAMPLE_KEY).in_doubt_resends == 1


def test_lock_contention_is_retried(bridge: SalesforceBridge, org: Org) -> None:
    fake, _, _ = org
    client, _ = bridge()
    locked = [{"message": "unable to obtain lock", "errorCode": "UNABLE_TO_LOCK_ROW"}]
    fake.next_replies.append(Reply(400, locked))

    response = client.post("/activities", json=example_activity(**ids(fake)))

    assert response.status_code == 201
    assert len(fake.tasks) == 1


def test_validation_error_is_422_and_not_retried(
    bridge: SalesforceBridge, org: Org
) -> None:
    fake, _, _ = org
    client, _ = bridge(salesforce={"task_status": "Finished"})

    response = client.post("/activities", json=example_activity(**ids(fake)))

    assert response.status_code == 422
    assert response.json()["code"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert response.json()["fields"] == ["Status"]
    assert data_calls(fake) == 1


def test_daily_quota_is_503_and_not_retried(bridge: SalesforceBridge, org: Org) -> None:
    fake, _, _ = org
    client, settings = bridge()
    fake.api_used = fake.daily_api_limit

    response = client.post("/activities", json=example_activity(**ids(fake)))

    entry = journal_entry(settings, EXAMPLE_KEY)
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) >= 300
    assert data_calls(fake) == 1
    assert (entry.state, entry.reason) == (
        "pending",
        "salesforce write 403 REQUEST_LIMIT_EXCEEDED",
    )


def test_ids_of_the_wrong_kind_are_400_before_any_call(
    bridge: SalesforceBridge, org: Org
) -> None:
    fake, _, _ = org
    client, _ = bridge()

    response = client.post("/activities", json=example_activity())

    assert response.status_code == 400
    assert sum(fake.calls.values()) == 0


def settings_for(url: str, tls_path: Path, **values: Any) -> config.SalesforceSettings:
    return config.SalesforceSettings(domain=url, ca_bundle=tls_path, **values)


def an_activity(fake: FakeSalesforce, message_id: str = "m-1") -> Activity:
    body = example_activity(metadata={"messageId": message_id}, **ids(fake))
    return ActivityRequest.model_validate(body).normalise(datetime.now(UTC))


def test_access_token_auth_writes_with_the_given_token(
    org: Org, tls: TlsMaterial
) -> None:
    fake, _, url = org
    settings = settings_for(url, tls.ca_path, auth="access_token", instance_url=url)
    secrets = config.Secrets.from_environ({"SALESFORCE_ACCESS_TOKEN": DEFAULT_TOKEN})

    sent = SalesforceAdapter(settings, secrets, (1, 1)).send(
        "Task", [an_activity(fake)]
    )

    assert sent.results == list(fake.tasks)
    assert fake.token_requests == 0


def test_jwt_bearer_auth_signs_in_with_the_private_key(
    tls: TlsMaterial, tmp_path: Path
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (tmp_path / "key.pem").write_bytes(pem)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    fake = FakeSalesforce(jwt_public_key=public, jwt_username="bridge@example.com")
    secrets = config.Secrets.from_environ(
        {
            "SALESFORCE_CONSUMER_KEY": CLIENT_ID,
            "SALESFORCE_PRIVATE_KEY_FILE": str(tmp_path / "key.pem"),
        }
    )

    with serve(fake, Faults(), tls.server_context) as url:
        fake.base_url = url
        settings = settings_for(
            url, tls.ca_path, auth="jwt", username="bridge@example.com"
        )
        sent = SalesforceAdapter(settings, secrets, (1, 1)).send(
            "Task", [an_activity(fake)]
        )

    assert sent.results == list(fake.tasks)
    assert fake.token_requests == 1


def test_expired_session_logs_in_once_for_all_concurrent_calls(
    org: Org, tls: TlsMaterial
) -> None:
    fake, _, url = org
    settings = settings_for(url, tls.ca_path, auth="client_credentials")
    adapter = SalesforceAdapter(
        settings, config.Secrets.from_environ(CREDENTIALS), (2, 2)
    )
    adapter.send("Task", [an_activity(fake, "warm-up")])
    fake.expire_tokens()
    start = threading.Barrier(8)

    def send(n: int) -> list[str | CrmError]:
        start.wait()
        return adapter.send("Task", [an_activity(fake, f"m-{n}")]).results

    with ThreadPoolExecutor(8) as pool:
        results = [r for batch in pool.map(send, range(8)) for r in batch]

    assert all(isinstance(result, str) for result in results)
    assert fake.token_requests == 2


def test_ca_bundle_is_used_even_when_the_environment_names_another(
    org: Org,
    tls: TlsMaterial,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake, _, url = org
    stranger = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(stranger)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(stranger))
    secrets = config.Secrets.from_environ(CREDENTIALS)
    trusted = SalesforceAdapter(
        settings_for(url, tls.ca_path, auth="client_credentials"), secrets, (1, 1)
    )
    untrusted = SalesforceAdapter(
        settings_for(url, stranger, auth="client_credentials"), secrets, (1, 1)
    )

    sent = trusted.send("Task", [an_activity(fake)])
    with pytest.raises(CrmError) as refused:
        untrusted.send("Task", [an_activity(fake, "m-2")])

    assert sent.results == list(fake.tasks)
    assert (refused.value.operation, refused.value.code) == ("login", "SSLError")


def test_collection_answers_each_record_in_order(org: Org, tls: TlsMaterial) -> None:
    fake, _, url = org
    settings = settings_for(
        url, tls.ca_path, auth="client_credentials", external_id_field=EXTERNAL_ID
    )
    adapter = SalesforceAdapter(
        settings, config.Secrets.from_environ(CREDENTIALS), (2, 2)
    )
    good = [an_activity(fake, f"m-{n}") for n in range(3)]
    unknown_owner = {**ids(fake), "ownerId": "0055g00000ZZZZZZZZ"}
    bad = ActivityRequest.model_validate(
        example_activity(metadata={"messageId": "x"}, **unknown_owner)
    ).normalise(datetime.now(UTC))

    [earlier] = adapter.send("Task", [good[0]]).results

    sent = adapter.send("Task", [good[1], bad, good[2], good[0]])

    second, error, third, again = sent.results
    assert isinstance(error, CrmError)
    assert error.reason == "salesforce write 400 INVALID_CROSS_REFERENCE_KEY OwnerId"
    assert [earlier, second, third] == list(fake.tasks)
    assert again == earlier
    assert sent.limits is not None
    assert sent.limits.limit == fake.daily_api_limit
