"""HubSpot end to end: the app, the real SDK, the fake account over HTTP."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from bridge import config
from tests.conftest import (
    DEDUPE_PROPERTY,
    EXAMPLE_KEY,
    ClientFactory,
    SettingsFactory,
    example_activity,
    journal_entry,
    merge,
)
from tests.fakes.hubspot import FakeHubSpot
from tests.fakes.server import Faults, Reply

HubSpotBridge = Callable[..., tuple[TestClient, config.Settings]]
IDS = {"contactId": "101", "companyId": "201", "ownerId": "301"}


@pytest.fixture
def bridge(
    hubspot: tuple[FakeHubSpot, Faults, str],
    make_settings: SettingsFactory,
    make_client: ClientFactory,
) -> HubSpotBridge:
    _, _, url = hubspot

    def make(**sections: dict[str, Any]) -> tuple[TestClient, config.Settings]:
        base = {
            "crm": {
                "backend": "hubspot",
                "deadline_seconds": 3,
                "connect_timeout": 1,
                "read_timeout": 1,
            },
            "hubspot": {"base_url": url, "dedupe_settle_seconds": 0.05},
            "outbox": {"poll_seconds": 0.05, "backoff_max_seconds": 1},
        }
        settings = make_settings(**merge(base, sections))
        return make_client(settings), settings

    return make


def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_contract_example_becomes_a_linkedin_communication(
    bridge: HubSpotBridge, hubspot: tuple[FakeHubSpot, Faults, str]
) -> None:
    fake, _, _ = hubspot
    client, _ = bridge()

    response = client.post("/activities", json=example_activity(**IDS))

    [created] = fake.created("communications")
    assert response.status_code == 201
    assert response.json() == {
        "id": created["id"],
        "type": "LINKEDIN",
        "subject": "[1/3] [FROM Acme Corp] John Smith",
        "direction": "OUTBOUND",
        "occurredAt": "2024-12-31T10:00:00Z",
    }
    assert created["properties"] == {
        "hs_communication_channel_type": "LINKEDIN_MESSAGE",
        "hs_communication_logged_from": "CRM",
        "hs_communication_body": (
            "<p><strong>LinkedIn message sent</strong></p>"
            "<p>[1/3] [FROM Acme Corp] John Smith</p>"
            "<p>Hi Jane, I noticed your company is expanding...</p>"
        ),
        "hs_timestamp": "2024-12-31T10:00:00Z",
        "hubspot_owner_id": "301",
    }
    assert sorted(created["associations"]) == [
        ("companies", "201", 87),
        ("contacts", "101", 81),
    ]


def test_html_email_becomes_an_email_engagement(
    bridge: HubSpotBridge, hubspot: tuple[FakeHubSpot, Faults, str]
) -> None:
    fake, _, _ = hubspot
    client, _ = bridge()
    body = example_activity(
        type="EMAIL",
        subject="Re: Intro",
        body="<div>Thanks for the quick reply!</div>",
        direction="INBOUND",
        metadata={"sequenceIndex": 2},
        **IDS,
    )

    response = client.post("/activities", json=body)

    [created] = fake.created("emails")
    assert response.status_code == 201
    assert created["properties"] == {
        "hs_email_direction": "INCOMING_EMAIL",
        "hs_email_status": "SENT",
        "hs_email_subject": "Re: Intro",
        "hs_email_html": "<div>Thanks for the quick reply!</div>",
        "hs_email_text": "Thanks for the quick reply!",
        "hs_timestamp": "2024-12-31T10:00:00Z",
        "hubspot_owner_id": "301",
    }
    assert sorted(created["associations"]) == [
        ("companies", "201", 186),
        ("contacts", "101", 198),
    ]


def test_ids_hubspot_cannot_hold_are_400_before_any_call(
    bridge: HubSpotBridge, hubspot: tuple[FakeHubSpot, Faults, str]
) -> None:
    fake, _, _ = hubspot
    client, _ = bridge()

    response = client.post("/activities", json=example_activity())

    assert response.status_code == 400
    assert [d["field"] for d in response.json()["details"]] == [
        "contactId",
        "companyId",
        "ownerId",
    ]
    assert sum(fake.calls.values()) == 0


def test_rejection_is_422_dead_lettered_and_tried_again_on_resend(
    bridge: HubSpotBridge, hubspot: tuple[FakeHubSpot, Faults, str]
) -> None:
    fake, _, _ = hubspot
    client, settings = bridge()
    body = example_activity(**{**IDS, "ownerId": "999"})

    response = client.post("/activities", json=body)
    dead = journal_entry(settings, EXAMPLE_KEY)
    fake.add_owner("999")
    again = client.post("/activities", json=body)

    assert response.status_code == 422
    assert response.json() == {
        "error": "crm_rejected",
        "message": "hubspot rejected the activity (INVALID_OWNER_ID).",
        "code": "INVALID_OWNER_ID",
        "fields": ["hubspot_owner_id"],
    }
    assert (dead.state, dead.reason) == (
        "dead",
        "hubspot create 400 INVALID_OWNER_ID hubspot_owner_id",
    )
    assert again.status_code == 201
    assert len(fake.created("communications")) == 1


def test_throttling_and_server_errors_are_retried(
    bridge: HubSpotBridge, hubspot: tuple[FakeHubSpot, Faults, str]
) -> None:
    fake, faults, _ = hubspot
    client, settings = bridge()
    limited = {"status": "error", "policyName": "TEN_SECONDLY_ROLLING"}
    fake.next_replies.append(Reply(429, limited, {"Retry-After": "1"}))
    faults.script.extend(["error", "drop"])
    started = time.monotonic()

    response = client.post("/activities", json=example_activity(**IDS))

    entry = journal_entry(settings, EXAMPLE_KEY)
    assert response.status_code == 201
    assert time.monotonic() - started >= 1.0
    assert len(fake.created("communications")) == 1
    assert faults.injected == {"error": 1, "drop": 1}
    assert (entry.state, entry.attempts, entry.in_doubt_resends) == ("delivered", 4, 3)


def test_past_the_deadline_503_keeps_the_activity_for_the_next_request(
    bridge: HubSpotBridge, hubspot: tuple[FakeHubSpot, Faults, str]
) -> None:
    fake, faults, _ = hubspot
    client, settings = bridge(
        crm={"deadline_seconds": 0.5}, outbox={"backoff_max_seconds": 60}
    )
    faults.rates["error"] = 1.0

    refused = client.post("/activities", json=example_activity(**IDS))
    kept = journal_entry(settings, EXAMPLE_KEY)
    faults.clear()
    again = client.post("/activities", json=example_activity(**IDS))

    assert refused.status_code == 503
    assert int(refused.headers["Retry-After"]) >= 5
    assert refused.json()["error"] == "crm_unavailable"
    assert kept.state in ("pending", "sending")
    assert again.status_code == 201
    assert again.json()["id"] == fake.created("communications")[0]["id"]


def test_outbox_delivers_after_an_outage_without_a_new_request(
    bridge: HubSpotBridge, hubspot: tuple[FakeHubSpot, Faults, str]
) -> None:
    fake, faults, _ = hubspot
    client, settings = bridge(crm={"deadline_seconds": 0.3})
    faults.rates["error"] = 1.0

    refused = client.post("/activities", json=example_activity(**IDS))
    faults.clear()
    wait_for(lambda: journal_entry(settings, EXAMPLE_KEY).state == "delivered")

    assert refused.status_code == 503
    assert len(fake.created("communications")) == 1


def test_accept_mode_answers_202_with_a_stable_bridge_id(
    bridge: HubSpotBridge, hubspot: tuple[FakeHubSpot, Faults, str]
) -> None:
    fake, _, _ = hubspot
    client, settings = bridge(crm={"when_unavailable": "accept"})

    accepted = client.post("/activities", json=example_activity(**IDS))
    wait_for(lambda: journal_entry(settings, EXAMPLE_KEY).state == "delivered")
    later = client.post("/activities", json=example_activity(**IDS))

    entry = journal_entry(settings, EXAMPLE_KEY)
    assert accepted.status_code == 202
    assert accepted.json()["id"] == f"bridge-{entry.key_hash[:32]}"
    assert later.status_code == 200
    assert later.json()["id"] == fake.created("communications")[0]["id"]


def test_lost_answer_is_found_by_the_dedupe_property_not_resent(
    bridge: HubSpotBridge, hubspot: tuple[FakeHubSpot, Faults, str]
) -> None:
    fake, faults, _ = hubspot
    client, settings = bridge(hubspot={"dedupe_property": DEDUPE_PROPERTY})
    faults.script.append("lost")

    response = client.post("/activities", json=example_activity(**IDS))

    [created] = fake.created("communications")
    entry = journal_entry(settings, EXAMPLE_KEY)
    assert response.status_code == 201
    assert response.json()["id"] == created["id"]
    assert created["properties"][DEDUPE_PROPERTY] == entry.key_hash
    assert fake.calls["POST /crm/v3/objects/communications/search"] == 1
    assert entry.in_doubt_resends == 0


def test_lost_answer_without_dedupe_is_resent_and_counted(
    bridge: HubSpotBridge, hubspot: tuple[FakeHubSpot, Faults, str]
) -> None:
    fake, faults, _ = hubspot
    client, settings = bridge()
    faults.script.append("lost")

    response = client.post("/activities", json=example_activity(**IDS))

    entry = journal_entry(settings, EXAMPLE_KEY)
    assert response.status_code == 201
    assert len(fake.created("communications")) == 2
    assert entry.in_doubt_resends == 1


def test_stall_past_the_read_timeout_is_in_doubt(
    bridge: HubSpotBridge, hubspot: tuple[FakeHubSpot, Faults, str]
) -> None:
    fake, faults, _ = hubspot
    client, settings = bridge(
        crm={"read_timeout": 0.3}, hubspot={"dedupe_property": DEDUPE_PROPERTY}
    )
    faults.stall_seconds = 1.0
    faults.script.append("stall")

    response = client.post("/activities", json=example_activity(**IDS))

    assert response.status_code == 201
    assert len(fake.created("communications")) == 1
    assert journal_entry(settings, EXAMPLE_KEY).attempts == 1


def test_expired_token_is_kept_as_pending_not_rejected(
    bridge: HubSpotBridge, hubspot: tuple[FakeHubSpot, Faults, str]
) -> None:
    fake, _, _ = hubspot
    client, settings = bridge(crm={"deadline_seconds": 0.5})
    fake.tokens.clear()

    response = client.post("/activities", json=example_activity(**IDS))

    entry = journal_entry(settings, EXAMPLE_KEY)
    assert response.status_code == 503
    assert (entry.state, entry.reason) == (
        "pending",
        "hubspot create 401 INVALID_AUTHENTICATION",
    )


def test_activity_older_than_max_age_becomes_a_dead_letter_until_resent(
    bridge: HubSpotBridge, hubspot: tuple[FakeHubSpot, Faults, str]
) -> None:
    fake, faults, _ = hubspot
    client, settings = bridge(
        crm={"deadline_seconds": 0.2}, outbox={"max_age": 0.5, "backoff_max_seconds": 1}
    )
    faults.rates["error"] = 1.0

    refused = client.post("/activities", json=example_activity(**IDS))
    wait_for(lambda: journal_entry(settings, EXAMPLE_KEY).state == "dead")
    dead = journal_entry(settings, EXAMPLE_KEY)
    faults.clear()
    resent = client.post("/activities", json=example_activity(**IDS))

    assert refused.status_code == 503
    assert re.fullmatch(
        r"expired after \d+ attempts; last: hubspot create 50\d INTERNAL_ERROR",
        dead.reason or "",
    )
    assert resent.status_code == 201
    assert len(fake.created("communications")) == 1


def test_failed_lookup_is_retried_not_answered_by_a_blind_resend(
    bridge: HubSpotBridge, hubspot: tuple[FakeHubSpot, Faults, str]
) -> None:
    fake, faults, _ = hubspot
    client, settings = bridge(hubspot={"dedupe_property": DEDUPE_PROPERTY})
    faults.script.extend(["lost", "lost"])

    response = client.post("/activities", json=example_activity(**IDS))

    [created] = fake.created("communications")
    entry = journal_entry(settings, EXAMPLE_KEY)
    assert response.status_code == 201
    assert response.json()["id"] == created["id"]
    assert fake.calls["POST /crm/v3/objects/communications/search"] == 2
    assert (entry.state, entry.crm_id) == ("delivered", created["id"])
