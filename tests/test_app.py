"""The HTTP surface, end to end on the embedded local backend."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from starlette.testclient import TestClient

from adapters.local import LocalAdapter
from tests.conftest import API_KEY, ClientFactory, SettingsFactory, example_activity


@pytest.fixture
def local(make_settings: SettingsFactory) -> LocalAdapter:
    settings = make_settings()
    return LocalAdapter(settings.local.path)


@pytest.fixture
def client(
    make_settings: SettingsFactory, make_client: ClientFactory, local: LocalAdapter
) -> TestClient:
    settings = make_settings(
        {"CRM_BRIDGE_API_KEYS": f"old-key,{API_KEY}"},
        server={"api_key_header": "X-Enginy-Key"},
    )
    made = make_client(settings, local)
    made.headers.pop("X-API-Key")
    made.headers["x-enginy-key"] = API_KEY
    return made


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/health"), ("POST", "/activities"), ("GET", "/users"), ("GET", "/x")],
)
@pytest.mark.parametrize("key", [None, "", "wrong-key", API_KEY + "x"])
def test_every_endpoint_refuses_a_missing_or_wrong_key(
    client: TestClient, local: LocalAdapter, method: str, path: str, key: str | None
) -> None:
    headers = {} if key is None else {"X-Enginy-Key": key}
    client.headers.pop("x-enginy-key")

    response = client.request(method, path, headers=headers, json=example_activity())

    assert response.status_code == 401
    assert response.json() == {
        "error": "unauthorized",
        "message": "Missing or invalid API key in X-Enginy-Key.",
    }
    assert local.count() == 0


def test_rotated_keys_are_both_accepted(client: TestClient) -> None:
    old = client.get("/health", headers={"X-ENGINY-KEY": "old-key"})
    new = client.get("/health")

    assert (old.status_code, new.status_code) == (200, 200)
    assert new.json() == {"status": "ok", "backend": "local"}


def test_post_activity_answers_the_created_activity(
    client: TestClient, local: LocalAdapter
) -> None:
    response = client.post("/activities", json=example_activity())

    assert response.status_code == 201
    assert response.json() == {
        "id": "local-1",
        "type": "LINKEDIN",
        "subject": "[1/3] [FROM Acme Corp] John Smith",
        "direction": "OUTBOUND",
        "occurredAt": "2024-12-31T10:00:00Z",
    }
    assert local.count() == 1


def test_repeat_answers_the_same_id_without_a_second_write(
    client: TestClient, local: LocalAdapter
) -> None:
    first = client.post("/activities", json=example_activity())

    again = client.post("/activities", json=example_activity(body="edited"))

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert local.count() == 1


def test_concurrent_requests_with_one_key_create_one_object(
    client: TestClient, local: LocalAdapter
) -> None:
    start = threading.Barrier(16)

    def post(_: int) -> dict[str, Any]:
        start.wait()
        return dict(client.post("/activities", json=example_activity()).json())

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(post, range(16)))

    assert {answer["id"] for answer in answers} == {"local-1"}
    assert local.count() == 1


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (b"{", ["body"]),
        (b"[]", ["body"]),
        (b'{"direction": "OUTBOUND"}', ["type"]),
        (b'{"type": "SMS"}', ["type"]),
        (b'{"type": "EMAIL", "direction": "SIDEWAYS"}', ["direction"]),
        (b'{"type": "EMAIL", "occurredAt": "31/12/2024"}', ["occurredAt"]),
        (b'{"type": "EMAIL", "ownerId": 123}', ["ownerId"]),
        (b'{"type": "EMAIL", "metadata": []}', ["metadata"]),
    ],
)
def test_bad_body_is_400_with_details_and_reaches_no_crm(
    client: TestClient, local: LocalAdapter, body: bytes, fields: list[str]
) -> None:
    response = client.post("/activities", content=body)

    answer = response.json()
    assert response.status_code == 400
    assert answer["error"] == "invalid_request"
    assert [detail["field"] for detail in answer["details"]] == fields
    assert all(detail["problem"] for detail in answer["details"])
    assert local.count() == 0


def test_unknown_fields_are_accepted(client: TestClient) -> None:
    response = client.post(
        "/activities", json=example_activity(campaignId="c-1", tags=["x"])
    )

    assert response.status_code == 201


def test_body_past_the_limit_is_413_even_without_content_length(
    make_settings: SettingsFactory, make_client: ClientFactory, local: LocalAdapter
) -> None:
    client = make_client(make_settings(server={"max_body_bytes": 2048}), local)

    def chunks() -> Iterator[bytes]:
        yield b'{"type": "EMAIL", "body": "'
        for _ in range(10):
            yield b"x" * 512
        yield b'"}'

    streamed = client.post("/activities", content=chunks())
    declared = client.post("/activities", json=example_activity(body="x" * 4096))

    assert streamed.status_code == declared.status_code == 413
    assert streamed.json()["error"] == "payload_too_large"
    assert local.count() == 0


def test_unknown_route_and_method_answer_json(client: TestClient) -> None:
    missing = client.get("/users")
    wrong = client.get("/activities")

    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    assert (wrong.status_code, wrong.json()["error"]) == (405, "method_not_allowed")


def test_repeat_after_restart_answers_from_the_journal(
    make_settings: SettingsFactory, local: LocalAdapter
) -> None:
    from bridge.app import create_app

    settings = make_settings()
    headers = {"X-API-Key": API_KEY}
    with TestClient(create_app(settings, local), headers=headers) as first:
        created = first.post("/activities", json=example_activity()).json()
    fresh = LocalAdapter(settings.local.path)

    with TestClient(create_app(settings, fresh), headers=headers) as second:
        again = second.post("/activities", json=example_activity())

    assert again.status_code == 200
    assert again.json() == created
    assert LocalAdapter(settings.local.path).count() == 1
