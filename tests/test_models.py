from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.errors import InvalidRequest
from bridge.models import Activity, ActivityRequest, format_time, hash_key
from tests.conftest import example_activity

RECEIVED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def parse(body: Any) -> ActivityRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return ActivityRequest.parse(raw)


def test_parse_example_normalises_every_field() -> None:
    activity = parse(example_activity()).normalise(RECEIVED)

    assert activity == Activity(
        key="LINKEDIN:OUTBOUND:linkedin-msg-123",
        key_hash=hash_key("LINKEDIN:OUTBOUND:linkedin-msg-123"),
        type=activity.type,
        direction=activity.direction,
        subject="[1/3] [FROM Acme Corp] John Smith",
        body="Hi Jane, I noticed your company is expanding...",
        owner_id="user-123",
        occurred_at=datetime(2024, 12, 31, 10, 0, tzinfo=UTC),
        contact_id="contact_8f3k2j",
        company_id="account_4k8j2m",
    )
    assert (activity.type.value, activity.direction) == ("LINKEDIN", "OUTBOUND")


@pytest.mark.parametrize(
    ("body", "message", "fields"),
    [
        (b"{not json", "The body is not valid JSON.", ["body"]),
        (b"", "The body is not valid JSON.", ["body"]),
        ([1, 2], "The body must be a JSON object.", ["body"]),
        ("text", "The body must be a JSON object.", ["body"]),
        ({}, "Invalid fields: type.", ["type"]),
        ({"type": "FAX"}, "Invalid fields: type.", ["type"]),
        ({"type": "email"}, "Invalid fields: type.", ["type"]),
        (
            {"type": "EMAIL", "direction": "UP"},
            "Invalid fields: direction.",
            ["direction"],
        ),
        (
            {"type": "EMAIL", "occurredAt": "yesterday"},
            "Invalid fields: occurredAt.",
            ["occurredAt"],
        ),
        (
            {"type": "EMAIL", "occurredAt": 1735639200},
            "Invalid fields: occurredAt.",
            ["occurredAt"],
        ),
        (
            {"type": "EMAIL", "subject": 5, "contactId": ["x"]},
            "Invalid fields: subject, contactId.",
            ["subject", "contactId"],
        ),
        (
            {"type": "EMAIL", "metadata": {"messageId": {"a": 1}}},
            "Invalid fields: metadata.messageId.",
            ["metadata.messageId"],
        ),
        (
            {"type": "EMAIL", "metadata": "m-1"},
            "Invalid fields: metadata.",
            ["metadata"],
        ),
    ],
)
def test_parse_bad_body_names_the_fields(
    body: Any, message: str, fields: list[str]
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse(body)

    assert raised.value.message == message
    assert [problem.field for problem in raised.value.details] == fields


def test_parse_problems_never_echo_the_input() -> None:
    secret = "jane.doe@example.com"

    with pytest.raises(InvalidRequest) as raised:
        parse({"type": secret, "subject": [secret], "occurredAt": secret})

    text = raised.value.message + repr(raised.value.details)
    assert secret not in text


def test_parse_accepts_unknown_fields_and_blank_ids() -> None:
    request = parse({"type": "EMAIL", "campaign": {"x": 1}, "contactId": ""})

    assert request.contact_id is None


def test_parse_rejects_an_oversized_message_id() -> None:
    with pytest.raises(InvalidRequest, match="messageId"):
        parse({"type": "EMAIL", "metadata": {"messageId": "m" * 513}})


def test_occurred_at_without_zone_is_utc_and_missing_is_receipt() -> None:
    naive = parse({"type": "EMAIL", "occurredAt": "2024-12-31T10:00:00"})
    offset = parse({"type": "EMAIL", "occurredAt": "2024-12-31T12:00:00+02:00"})
    missing = parse({"type": "EMAIL"})

    assert (
        naive.normalise(RECEIVED).occurred_at == offset.normalise(RECEIVED).occurred_at
    )
    assert missing.normalise(RECEIVED).occurred_at == RECEIVED


def test_key_uses_message_id_type_and_direction() -> None:
    sent = parse(example_activity()).idempotency_key()
    received = parse(example_activity(direction="INBOUND")).idempotency_key()
    numeric = parse({"type": "EMAIL", "metadata": {"messageId": 42}}).idempotency_key()

    assert (sent, received, numeric) == (
        "LINKEDIN:OUTBOUND:linkedin-msg-123",
        "LINKEDIN:INBOUND:linkedin-msg-123",
        "EMAIL::42",
    )


def test_key_without_message_id_hashes_the_known_fields_only() -> None:
    body = example_activity(metadata={"sequenceIndex": 2})
    same = {**body, "addedLater": True}
    other = {**body, "body": "Another message"}

    first = parse(body).idempotency_key()

    assert first.startswith("payload:")
    assert parse(same).idempotency_key() == first
    assert parse(other).idempotency_key() != first


def test_activity_round_trips_through_json() -> None:
    activity = parse(example_activity()).normalise(RECEIVED)

    assert Activity.from_json(activity.to_json()) == activity


def test_answer_has_the_contract_shape() -> None:
    activity = parse(example_activity()).normalise(RECEIVED)

    assert activity.answer("123") == {
        "id": "123",
        "type": "LINKEDIN",
        "subject": "[1/3] [FROM Acme Corp] John Smith",
        "direction": "OUTBOUND",
        "occurredAt": "2024-12-31T10:00:00Z",
    }


def test_format_time_keeps_milliseconds_only_when_present() -> None:
    whole = datetime(2024, 12, 31, 10, 0, tzinfo=UTC)

    assert format_time(whole) == "2024-12-31T10:00:00Z"
    assert format_time(whole.replace(microsecond=250_000)) == "2024-12-31T10:00:00.250Z"
