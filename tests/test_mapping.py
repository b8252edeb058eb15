"""The mappings as pure functions: every type x direction for each CRM."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from adapters import hubspot_mapping, salesforce_mapping
from adapters.text import cut, plain_text
from bridge.config import SalesforceSettings
from bridge.errors import Problem
from bridge.models import Activity, ActivityRequest

RECEIVED = datetime(2026, 1, 2, tzinfo=UTC)


def activity(**fields: Any) -> Activity:
    body: dict[str, Any] = {
        "type": "LINKEDIN",
        "subject": "[1/3] [FROM Acme Corp] John Smith",
        "body": "Hi Jane,\nshall we talk?",
        "direction": "OUTBOUND",
        "occurredAt": "2024-12-31T10:00:00Z",
        "metadata": {"messageId": "m-1"},
    }
    body.update(fields)
    return ActivityRequest.model_validate(body).normalise(RECEIVED)


COMMUNICATION = {
    "hs_communication_channel_type": "LINKEDIN_MESSAGE",
    "hs_communication_logged_from": "CRM",
    "hs_timestamp": "2024-12-31T10:00:00Z",
}


@pytest.mark.parametrize(
    ("kind", "direction", "expected"),
    [
        (
            "EMAIL",
            "OUTBOUND",
            {"hs_email_direction": "EMAIL", "hs_email_status": "SENT"},
        ),
        (
            "EMAIL",
            "INBOUND",
            {"hs_email_direction": "INCOMING_EMAIL", "hs_email_status": "SENT"},
        ),
        ("LINKEDIN", "OUTBOUND", {"first_line": "LinkedIn message sent"}),
        ("LINKEDIN", "INBOUND", {"first_line": "LinkedIn message received"}),
        ("LINKEDIN_INMAIL", "OUTBOUND", {"first_line": "LinkedIn InMail sent"}),
        ("LINKEDIN_INMAIL", "INBOUND", {"first_line": "LinkedIn InMail received"}),
        (
            "LINKEDIN_CONNECTION",
            "OUTBOUND",
            {"first_line": "LinkedIn connection request sent"},
        ),
        (
            "LINKEDIN_CONNECTION",
            "INBOUND",
            {"first_line": "LinkedIn connection request accepted"},
        ),
    ],
)
def test_hubspot_properties_by_type_and_direction(
    kind: str, direction: str, expected: dict[str, str]
) -> None:
    item = activity(type=kind, direction=direction, ownerId="301")

    props = hubspot_mapping.properties(item)

    if kind == "EMAIL":
        assert hubspot_mapping.object_type(item) == "emails"
        assert props == {
            **expected,
            "hs_email_subject": "[1/3] [FROM Acme Corp] John Smith",
            "hs_email_html": "Hi Jane,<br>shall we talk?",
            "hs_email_text": "Hi Jane,\nshall we talk?",
            "hs_timestamp": "2024-12-31T10:00:00Z",
            "hubspot_owner_id": "301",
        }
    else:
        assert hubspot_mapping.object_type(item) == "communications"
        assert props == {
            **COMMUNICATION,
            "hubspot_owner_id": "301",
            "hs_communication_body": (
                f"<p><strong>{expected['first_line']}</strong></p>"
                "<p>[1/3] [FROM Acme Corp] John Smith</p>"
                "<p>Hi Jane,<br>shall we talk?</p>"
            ),
        }


@pytest.mark.parametrize(
    ("kind", "contact_type", "company_type"),
    [("EMAIL", 198, 186), ("LINKEDIN", 81, 87), ("LINKEDIN_INMAIL", 81, 87)],
)
def test_hubspot_associations_use_the_pair_type_ids(
    kind: str, contact_type: int, company_type: int
) -> None:
    item = activity(type=kind, contactId="101", companyId="201")

    associations = hubspot_mapping.associations(item)

    assert associations == [
        {
            "to": {"id": "101"},
            "types": [
                {
                    "associationCategory": "HUBSPOT_DEFINED",
                    "associationTypeId": contact_type,
                }
            ],
        },
        {
            "to": {"id": "201"},
            "types": [
                {
                    "associationCategory": "HUBSPOT_DEFINED",
                    "associationTypeId": company_type,
                }
            ],
        },
    ]


def test_hubspot_html_email_keeps_html_and_gets_readable_text() -> None:
    html = "<div>Thanks for the <b>quick</b> reply!</div><ul><li>one</li></ul>"
    item = activity(type="EMAIL", body=html, subject=None, direction=None)

    props = hubspot_mapping.properties(item, dedupe_property="crm_bridge_key")

    assert props["hs_email_html"] == html
    assert props["hs_email_text"] == "Thanks for the quick reply!\n  * one"
    assert props["hs_email_direction"] == "EMAIL"
    assert props["crm_bridge_key"] == item.key_hash
    assert "hs_email_subject" not in props


def test_hubspot_escapes_text_in_communication_bodies() -> None:
    item = activity(subject="<script>", body="a < b & c")

    body = hubspot_mapping.properties(item)["hs_communication_body"]

    assert "<p>&lt;script&gt;</p><p>a &lt; b &amp; c</p>" in body


def test_hubspot_cuts_values_to_the_property_limit() -> None:
    item = activity(type="EMAIL", body="x" * 70_000)

    props = hubspot_mapping.properties(item)

    assert len(props["hs_email_text"]) == hubspot_mapping.MAX_PROPERTY
    assert props["hs_email_text"].endswith("…")


def test_hubspot_missing_occurred_at_is_the_time_of_receipt() -> None:
    item = activity(occurredAt=None)

    assert hubspot_mapping.properties(item)["hs_timestamp"] == "2026-01-02T00:00:00Z"


def test_hubspot_check_names_ids_that_are_not_numbers() -> None:
    item = activity(contactId="contact_8f3k2j", companyId="201", ownerId="user-1")

    assert hubspot_mapping.check(item) == [
        Problem("contactId", "is not a HubSpot id (digits only)"),
        Problem("ownerId", "is not a HubSpot id (digits only)"),
    ]


CONTACT = "0035g00000AbCdE001"
LEAD = "00Q5g00000AbCdE001"
ACCOUNT = "0015g00000AbCdE001"
USER = "0055g00000AbCdE001"


@pytest.mark.parametrize(
    ("kind", "direction", "subtype", "subject"),
    [
        ("EMAIL", "OUTBOUND", "Email", "Email sent"),
        ("EMAIL", "INBOUND", "Email", "Email received"),
        ("LINKEDIN", "OUTBOUND", "LinkedIn", "LinkedIn message sent"),
        ("LINKEDIN", "INBOUND", "LinkedIn", "LinkedIn message received"),
        ("LINKEDIN_INMAIL", "OUTBOUND", "LinkedIn", "LinkedIn InMail sent"),
        ("LINKEDIN_INMAIL", "INBOUND", "LinkedIn", "LinkedIn InMail received"),
        (
            "LINKEDIN_CONNECTION",
            "OUTBOUND",
            "LinkedIn",
            "LinkedIn connection request sent",
        ),
        (
            "LINKEDIN_CONNECTION",
            "INBOUND",
            "LinkedIn",
            "LinkedIn connection request accepted",
        ),
    ],
)
def test_salesforce_task_by_type_and_direction(
    kind: str, direction: str, subtype: str, subject: str
) -> None:
    item = activity(
        type=kind,
        direction=direction,
        subject=None,
        contactId=CONTACT,
        companyId=ACCOUNT,
        ownerId=USER,
    )

    task = salesforce_mapping.task(item, SalesforceSettings())

    assert task == {
        "Subject": subject,
        "Description": "Hi Jane,\nshall we talk?",
        "ActivityDate": "2024-12-31",
        "Status": "Completed",
        "Priority": "Normal",
        "TaskSubtype": subtype,
        "WhoId": CONTACT,
        "WhatId": ACCOUNT,
        "OwnerId": USER,
    }


def test_salesforce_lead_drops_what_id_and_external_id_is_the_key_hash() -> None:
    item = activity(contactId=LEAD, companyId=ACCOUNT)
    settings = SalesforceSettings(
        external_id_field="Enginy_Key__c", task_status="Done", linkedin_subtype="Task"
    )

    task = salesforce_mapping.task(item, settings)

    assert "WhatId" not in task
    assert task["WhoId"] == LEAD
    assert task["Enginy_Key__c"] == item.key_hash
    assert (task["Status"], task["TaskSubtype"]) == ("Done", "Task")


def test_salesforce_date_is_the_utc_date_and_fields_are_cut() -> None:
    item = activity(
        occurredAt="2024-12-31T23:30:00-05:00",
        subject="s" * 300,
        body="<p>" + "word " * 8_000 + "</p>",
    )

    task = salesforce_mapping.task(item, SalesforceSettings())

    assert task["ActivityDate"] == "2025-01-01"
    assert len(task["Subject"]) == salesforce_mapping.MAX_SUBJECT
    assert len(task["Description"]) == salesforce_mapping.MAX_DESCRIPTION
    assert "<p>" not in task["Description"]


def test_salesforce_check_names_ids_of_the_wrong_kind() -> None:
    item = activity(contactId=ACCOUNT, companyId="001short", ownerId="00G5g00000AbCdE")

    assert salesforce_mapping.check(item) == [
        Problem("contactId", "is not a Contact (003) or Lead (00Q) id"),
        Problem("companyId", "is not an Account (001) id"),
    ]


def test_plain_text_lays_out_html_and_keeps_plain_text() -> None:
    html = '<p>Hello<br>there</p><p>See <a href="https://acme.test">this</a></p>'

    assert plain_text(html) == "Hello\nthere\n\nSee [this](https://acme.test)"
    assert plain_text("1 < 2 and 3 > 2") == "1 < 2 and 3 > 2"
    assert cut("abcdef", 4) == "abc…"
