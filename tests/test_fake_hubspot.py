"""The HubSpot fake, driven through the real ``hubspot-api-client`` over HTTP."""

from __future__ import annotations

import collections
import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from hubspot import HubSpot
from hubspot.crm.objects import ApiException as ObjectsApiException
from hubspot.crm.objects.communications import (
    ApiException as CommunicationsApiException,
)
from hubspot.crm.objects.emails import ApiException as EmailsApiException
from hubspot.crm.objects.emails import BatchResponseSimplePublicObjectWithErrors
from urllib3.util.retry import Retry

from tests.fakes.hubspot import FakeHubSpot
from tests.fakes.server import Faults, Reply, serve

TOKEN = "pat-na1-test"
TIMEOUT = (2, 5)
TIMESTAMP = "2024-05-01T10:00:00.000Z"
ISO_MILLIS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


class ManualClock:
    """A monotonic clock that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Sdk:
    """The SDK's API objects, each built once against one served fake."""

    emails: Any
    email_batch: Any
    email_search: Any
    communications: Any
    objects: Any

    def close(self) -> None:
        """Drop pooled keep-alive connections so server threads can end."""
        apis = (
            self.emails,
            self.email_batch,
            self.email_search,
            self.communications,
            self.objects,
        )
        for api in apis:
            api.api_client.rest_client.pool_manager.clear()


@contextmanager
def connect(
    fake: FakeHubSpot,
    token: str = TOKEN,
    faults: Faults | None = None,
    **config: Any,
) -> Iterator[Sdk]:
    """Serve ``fake`` and point an SDK client at it."""
    with serve(fake, faults) as base_url:
        client = HubSpot(
            access_token=token, host=base_url, retry=Retry(total=False), **config
        )
        emails = client.crm.objects.emails
        sdk = Sdk(
            emails=emails.basic_api,
            email_batch=emails.batch_api,
            email_search=emails.search_api,
            communications=client.crm.objects.communications.basic_api,
            objects=client.crm.objects.basic_api,
        )
        try:
            yield sdk
        finally:
            sdk.close()


@pytest.fixture
def fake() -> FakeHubSpot:
    return FakeHubSpot(custom_properties={"crm_bridge_key"})


@pytest.fixture
def sdk(fake: FakeHubSpot) -> Iterator[Sdk]:
    with connect(fake) as connected:
        yield connected


def email_input(**properties: str) -> dict[str, Any]:
    return {"properties": {"hs_timestamp": TIMESTAMP, **properties}}


def traced(trace_id: str, item: dict[str, Any]) -> dict[str, Any]:
    return {**item, "objectWriteTraceId": trace_id}


def association(to_id: str, type_id: int) -> dict[str, Any]:
    spec = {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}
    return {"to": {"id": to_id}, "types": [spec]}


def create_email(sdk: Sdk, body: dict[str, Any]) -> Any:
    return sdk.emails.create(
        simple_public_object_input_for_create=body, _request_timeout=TIMEOUT
    )


def create_emails(sdk: Sdk, inputs: list[dict[str, Any]]) -> Any:
    return sdk.email_batch.create_with_http_info(
        batch_input_simple_public_object_batch_input_for_create={"inputs": inputs},
        _request_timeout=TIMEOUT,
    )


def search_emails(sdk: Sdk, body: dict[str, Any]) -> Any:
    return sdk.email_search.do_search(
        public_object_search_request=body, _request_timeout=TIMEOUT
    )


def key_filter(operator: str, **value: Any) -> dict[str, Any]:
    condition = {"propertyName": "crm_bridge_key", "operator": operator, **value}
    return {
        "filterGroups": [{"filters": [condition]}],
        "properties": ["crm_bridge_key"],
    }


def rejection(error: Any) -> tuple[int, str, list[str]]:
    """Status, category and detail codes of an ApiException."""
    body = json.loads(error.body)
    codes = [detail["code"] for detail in body.get("errors", [])]
    return error.status, body["category"], codes


def property_names(error: Any) -> list[list[str]]:
    body = json.loads(error.body)
    return [detail["context"]["propertyName"] for detail in body["errors"]]


# -- single create -----------------------------------------------------------


def test_create_email_stores_properties_and_associations(
    fake: FakeHubSpot, sdk: Sdk
) -> None:
    body = email_input(hs_email_direction="EMAIL", hubspot_owner_id="301")
    body["associations"] = [association("101", 198), association("201", 186)]

    created, status, _ = sdk.emails.create_with_http_info(
        simple_public_object_input_for_create=body, _request_timeout=TIMEOUT
    )

    stamp = fake.created("emails")[0]["createdAt"]
    assert status == 201
    assert fake.created("emails") == [
        {
            "id": "50000000001",
            "properties": body["properties"],
            "associations": [("contacts", "101", 198), ("companies", "201", 186)],
            "createdAt": stamp,
        }
    ]
    assert created.id == "50000000001"
    assert created.properties == {
        **body["properties"],
        "hs_object_id": "50000000001",
        "hs_createdate": stamp,
        "hs_lastmodifieddate": stamp,
    }


def test_create_answers_with_hubspot_json_shape(sdk: Sdk) -> None:
    raw = sdk.emails.create(
        simple_public_object_input_for_create=email_input(),
        _preload_content=False,
        _request_timeout=TIMEOUT,
    )

    answer = json.loads(raw.data)

    assert sorted(answer) == ["archived", "createdAt", "id", "properties", "updatedAt"]
    assert answer["archived"] is False
    assert ISO_MILLIS.fullmatch(answer["createdAt"])
    assert answer["updatedAt"] == answer["createdAt"]


def test_create_communication_stores_associations(fake: FakeHubSpot, sdk: Sdk) -> None:
    properties = {
        "hs_timestamp": "1714557600000",
        "hs_communication_channel_type": "WHATS_APP",
        "hs_communication_logged_from": "CRM",
        "hs_communication_body": "Hi",
    }
    associations = [association("102", 81), association("202", 87)]

    created = sdk.communications.create(
        simple_public_object_input_for_create={
            "properties": properties,
            "associations": associations,
        },
        _request_timeout=TIMEOUT,
    )

    [record] = fake.created("communications")
    assert record["id"] == created.id
    assert record["properties"] == properties
    assert record["associations"] == [
        ("contacts", "102", 81),
        ("companies", "202", 87),
    ]


def test_create_email_rejects_invalid_direction(fake: FakeHubSpot, sdk: Sdk) -> None:
    body = email_input(hs_email_direction="OUTGOING_SECRET")

    with pytest.raises(EmailsApiException) as raised:
        create_email(sdk, body)

    assert rejection(raised.value) == (400, "VALIDATION_ERROR", ["INVALID_OPTION"])
    assert property_names(raised.value) == [["hs_email_direction"]]
    assert "OUTGOING_SECRET" not in raised.value.body
    assert fake.created("emails") == []


def test_create_email_requires_timestamp(fake: FakeHubSpot, sdk: Sdk) -> None:
    body = {"properties": {"hs_email_subject": "Hello"}}

    with pytest.raises(EmailsApiException) as raised:
        create_email(sdk, body)

    assert rejection(raised.value) == (400, "VALIDATION_ERROR", ["REQUIRED_PROPERTY"])
    assert property_names(raised.value) == [["hs_timestamp"]]
    assert fake.created("emails") == []


@pytest.mark.parametrize(
    ("properties", "code", "name"),
    [
        ({"hs_timestamp": "yesterday"}, "INVALID_DATETIME", "hs_timestamp"),
        ({"hs_email_text": "x" * 65_537}, "TOO_LONG", "hs_email_text"),
        ({"hs_email_subject": 7}, "INVALID_PROPERTY_VALUE", "hs_email_subject"),
        ({"hs_email_color": "red"}, "PROPERTY_DOESNT_EXIST", "hs_email_color"),
        ({"hubspot_owner_id": "399"}, "INVALID_OWNER_ID", "hubspot_owner_id"),
    ],
)
def test_create_email_rejects_bad_property(
    sdk: Sdk, properties: dict[str, Any], code: str, name: str
) -> None:
    body = {"properties": {"hs_timestamp": TIMESTAMP, **properties}}

    with pytest.raises(EmailsApiException) as raised:
        create_email(sdk, body)

    assert rejection(raised.value) == (400, "VALIDATION_ERROR", [code])
    assert property_names(raised.value) == [[name]]


def test_create_email_accepts_custom_property(fake: FakeHubSpot, sdk: Sdk) -> None:
    body = email_input(crm_bridge_key="k-1")

    create_email(sdk, body)

    assert [r["properties"] for r in fake.created("emails")] == [body["properties"]]


def test_create_communication_rejects_email_association_type(
    fake: FakeHubSpot, sdk: Sdk
) -> None:
    body = {
        "properties": {
            "hs_timestamp": TIMESTAMP,
            "hs_communication_channel_type": "SMS",
        },
        "associations": [association("101", 198)],
    }

    with pytest.raises(CommunicationsApiException) as raised:
        sdk.communications.create(
            simple_public_object_input_for_create=body, _request_timeout=TIMEOUT
        )

    expected = (400, "VALIDATION_ERROR", ["INVALID_ASSOCIATION_TYPE"])
    assert rejection(raised.value) == expected
    assert fake.created("communications") == []


def test_create_email_rejects_unknown_contact(fake: FakeHubSpot, sdk: Sdk) -> None:
    body = {**email_input(), "associations": [association("999", 198)]}

    with pytest.raises(EmailsApiException) as raised:
        create_email(sdk, body)

    details = json.loads(raised.value.body)["errors"]
    assert rejection(raised.value) == (400, "VALIDATION_ERROR", ["OBJECT_NOT_FOUND"])
    assert details[0]["message"] == "Associated object 999 of type contacts not found."
    assert fake.created("emails") == []


def test_create_email_accepts_contact_added_later(fake: FakeHubSpot, sdk: Sdk) -> None:
    fake.add_contact("999")
    body = {**email_input(), "associations": [association("999", 198)]}

    create_email(sdk, body)

    assert fake.created("emails")[0]["associations"] == [("contacts", "999", 198)]


def test_create_email_rejects_unknown_owner(fake: FakeHubSpot, sdk: Sdk) -> None:
    body = email_input(hubspot_owner_id="999")

    with pytest.raises(EmailsApiException) as raised:
        create_email(sdk, body)

    assert rejection(raised.value) == (400, "VALIDATION_ERROR", ["INVALID_OWNER_ID"])
    assert fake.created("emails") == []


def test_create_rejects_bad_token(fake: FakeHubSpot) -> None:
    with (
        connect(fake, token="pat-na1-stolen") as sdk,
        pytest.raises(EmailsApiException) as raised,
    ):
        create_email(sdk, email_input())

    assert rejection(raised.value) == (401, "INVALID_AUTHENTICATION", [])
    assert fake.created("emails") == []


def test_create_rejects_unknown_object_type(sdk: Sdk) -> None:
    with pytest.raises(ObjectsApiException) as raised:
        sdk.objects.create(
            object_type="tasks",
            simple_public_object_input_for_create=email_input(),
            _request_timeout=TIMEOUT,
        )

    assert rejection(raised.value) == (404, "OBJECT_NOT_FOUND", [])


# -- batch create ------------------------------------------------------------


def test_batch_create_matches_results_by_trace_id(sdk: Sdk) -> None:
    inputs = [traced(f"t{n}", email_input(hs_email_subject=f"s{n}")) for n in range(3)]

    answer, status, _ = create_emails(sdk, inputs)

    traces = [result.object_write_trace_id for result in answer.results]
    subjects = {
        result.object_write_trace_id: result.properties["hs_email_subject"]
        for result in answer.results
    }
    assert (status, answer.status) == (201, "COMPLETE")
    assert subjects == {"t0": "s0", "t1": "s1", "t2": "s2"}
    assert traces != ["t0", "t1", "t2"]


def test_batch_create_returns_207_when_some_inputs_fail(
    fake: FakeHubSpot, sdk: Sdk
) -> None:
    good = traced("good", email_input())
    bad = traced("bad", email_input(hs_email_status="LOST"))

    answer, status, _ = create_emails(sdk, [good, bad])

    [error] = answer.errors
    assert status == 207
    assert isinstance(answer, BatchResponseSimplePublicObjectWithErrors)
    assert [result.object_write_trace_id for result in answer.results] == ["good"]
    assert answer.num_errors == 1
    assert (error.category, error.context) == (
        "VALIDATION_ERROR",
        {"objectWriteTraceId": ["bad"]},
    )
    assert [(d.code, d.context) for d in error.errors] == [
        ("INVALID_OPTION", {"propertyName": ["hs_email_status"]})
    ]
    assert [r["properties"] for r in fake.created("emails")] == [good["properties"]]


def test_batch_create_207_is_returned_not_raised(sdk: Sdk) -> None:
    inputs = [traced("good", email_input()), traced("bad", {"properties": {}})]

    answer = sdk.email_batch.create(
        batch_input_simple_public_object_batch_input_for_create={"inputs": inputs},
        _request_timeout=TIMEOUT,
    )

    assert (answer.status, answer.num_errors) == ("COMPLETE", 1)


@pytest.mark.parametrize(
    "trace_ids",
    [[None, None], ["a", None], ["a", "a"]],
    ids=["none", "some", "duplicate"],
)
def test_batch_create_without_distinct_trace_ids_rejects_whole_batch(
    fake: FakeHubSpot, sdk: Sdk, trace_ids: list[str | None]
) -> None:
    items = [email_input(), {"properties": {"hs_email_subject": "no time"}}]
    inputs = [
        item if trace_id is None else traced(trace_id, item)
        for item, trace_id in zip(items, trace_ids, strict=True)
    ]

    with pytest.raises(EmailsApiException) as raised:
        create_emails(sdk, inputs)

    assert rejection(raised.value) == (400, "VALIDATION_ERROR", ["REQUIRED_PROPERTY"])
    assert "inputs[1].hs_timestamp" in json.loads(raised.value.body)["message"]
    assert fake.created("emails") == []


@pytest.mark.parametrize("count", [0, 101])
def test_batch_create_rejects_bad_batch_size(
    fake: FakeHubSpot, sdk: Sdk, count: int
) -> None:
    inputs = [email_input() for _ in range(count)]

    with pytest.raises(EmailsApiException) as raised:
        create_emails(sdk, inputs)

    assert rejection(raised.value) == (400, "VALIDATION_ERROR", ["INVALID_BATCH_SIZE"])
    assert fake.created("emails") == []


# -- rate limits -------------------------------------------------------------


def test_rate_limit_refuses_fourth_request_in_ten_seconds() -> None:
    fake = FakeHubSpot(requests_per_10s=3, clock=ManualClock())

    with connect(fake) as sdk:
        answers = [
            sdk.emails.create_with_http_info(
                simple_public_object_input_for_create=email_input(),
                _request_timeout=TIMEOUT,
            )
            for _ in range(3)
        ]
        with pytest.raises(EmailsApiException) as raised:
            create_email(sdk, email_input())

    body = json.loads(raised.value.body)
    headers = raised.value.headers
    assert [answer[2]["X-HubSpot-RateLimit-Remaining"] for answer in answers] == [
        "2",
        "1",
        "0",
    ]
    assert raised.value.status == 429
    assert (body["errorType"], body["policyName"]) == (
        "RATE_LIMIT",
        "TEN_SECONDLY_ROLLING",
    )
    assert body["message"] == "You have reached your ten_secondly_rolling limit."
    assert (
        headers["X-HubSpot-RateLimit-Max"],
        headers["X-HubSpot-RateLimit-Remaining"],
        headers["X-HubSpot-RateLimit-Interval-Milliseconds"],
    ) == ("3", "0", "10000")
    assert len(fake.created("emails")) == 3


def test_rate_limit_window_rolls() -> None:
    clock = ManualClock()
    fake = FakeHubSpot(requests_per_10s=1, clock=clock)

    with connect(fake) as sdk:
        create_email(sdk, email_input())
        clock.now += 9.9
        with pytest.raises(EmailsApiException) as raised:
            create_email(sdk, email_input())
        clock.now += 0.1
        create_email(sdk, email_input())

    assert raised.value.status == 429
    assert len(fake.created("emails")) == 2


def test_daily_limit_refuses_past_limit() -> None:
    fake = FakeHubSpot(daily_limit=1)

    with connect(fake) as sdk:
        create_email(sdk, email_input())
        with pytest.raises(EmailsApiException) as raised:
            create_email(sdk, email_input())

    body = json.loads(raised.value.body)
    headers = raised.value.headers
    assert (raised.value.status, body["policyName"]) == (429, "DAILY")
    assert body["message"] == "You have reached your daily limit."
    assert (
        headers["X-HubSpot-RateLimit-Daily"],
        headers["X-HubSpot-RateLimit-Daily-Remaining"],
    ) == ("1", "0")


def test_search_limit_refuses_second_search_in_a_second() -> None:
    fake = FakeHubSpot(search_per_second=1, clock=ManualClock())

    with connect(fake) as sdk:
        search_emails(sdk, {})
        create_email(sdk, email_input())
        with pytest.raises(EmailsApiException) as raised:
            search_emails(sdk, {})

    body = json.loads(raised.value.body)
    assert (raised.value.status, body["policyName"]) == (429, "SECONDLY")


def test_throttle_fault_answers_ten_secondly_429(fake: FakeHubSpot) -> None:
    faults = Faults(script=collections.deque(["throttle"]))

    with (
        connect(fake, faults=faults) as sdk,
        pytest.raises(EmailsApiException) as raised,
    ):
        create_email(sdk, email_input())

    body = json.loads(raised.value.body)
    assert (raised.value.status, body["policyName"]) == (429, "TEN_SECONDLY_ROLLING")
    assert raised.value.headers["X-HubSpot-RateLimit-Remaining"] == "0"


def test_error_fault_rotates_server_errors(fake: FakeHubSpot) -> None:
    faults = Faults(script=collections.deque(["error"] * 4))
    statuses = []

    with connect(fake, faults=faults) as sdk:
        for _ in range(4):
            with pytest.raises(EmailsApiException) as raised:
                create_email(sdk, email_input())
            statuses.append(rejection(raised.value))

    assert statuses == [
        (500, "INTERNAL_ERROR", []),
        (502, "INTERNAL_ERROR", []),
        (503, "INTERNAL_ERROR", []),
        (504, "INTERNAL_ERROR", []),
    ]


# -- search ------------------------------------------------------------------


def test_search_finds_by_eq(sdk: Sdk) -> None:
    first = create_email(sdk, email_input(crm_bridge_key="k-1"))
    create_email(sdk, email_input(crm_bridge_key="k-2"))

    found = search_emails(sdk, key_filter("EQ", value="k-1"))

    assert found.total == 1
    assert found.results[0].properties == {
        "crm_bridge_key": "k-1",
        "hs_object_id": first.id,
        "hs_createdate": first.properties["hs_createdate"],
        "hs_lastmodifieddate": first.properties["hs_lastmodifieddate"],
    }


def test_search_finds_by_in(sdk: Sdk) -> None:
    created = [
        create_email(sdk, email_input(crm_bridge_key=f"k-{n}")) for n in range(3)
    ]

    found = search_emails(sdk, key_filter("IN", values=["k-0", "k-2", "k-9"]))

    assert found.total == 2
    assert [r.id for r in found.results] == [created[0].id, created[2].id]


def test_search_ors_groups_and_ands_filters(sdk: Sdk) -> None:
    a = create_email(sdk, email_input(crm_bridge_key="a", hs_email_status="SENT"))
    create_email(sdk, email_input(crm_bridge_key="b", hs_email_status="FAILED"))
    c = create_email(sdk, email_input(crm_bridge_key="c"))

    groups = [
        [("crm_bridge_key", "a"), ("hs_email_status", "SENT")],
        [("crm_bridge_key", "b"), ("hs_email_status", "SENT")],
        [("hs_object_id", c.id)],
    ]
    body = {
        "filterGroups": [
            {
                "filters": [
                    {"propertyName": n, "operator": "EQ", "value": v} for n, v in g
                ]
            }
            for g in groups
        ]
    }
    found = search_emails(sdk, body)

    assert [r.id for r in found.results] == [a.id, c.id]


def test_search_pages_with_after(sdk: Sdk) -> None:
    created = [create_email(sdk, email_input()) for _ in range(3)]

    first = search_emails(sdk, {"limit": 2})
    second = search_emails(sdk, {"limit": 2, "after": first.paging.next.after})

    assert [r.id for r in first.results + second.results] == [c.id for c in created]
    assert (first.total, second.paging) == (3, None)


def test_search_delay_hides_fresh_object() -> None:
    clock = ManualClock()
    fake = FakeHubSpot(search_delay=2.0, clock=clock)

    with connect(fake) as sdk:
        created = create_email(sdk, email_input())
        hidden = search_emails(sdk, {})
        clock.now += 2.0
        shown = search_emails(sdk, {})

    assert (hidden.total, hidden.results) == (0, [])
    assert [r.id for r in shown.results] == [created.id]


def _filters(count: int) -> list[dict[str, Any]]:
    return [{"propertyName": "hs_object_id", "operator": "EQ", "value": "1"}] * count


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"filterGroups": [{"filters": _filters(1)}] * 6}, "TOO_MANY_FILTER_GROUPS"),
        ({"filterGroups": [{"filters": _filters(7)}]}, "TOO_MANY_FILTERS"),
        ({"filterGroups": [{"filters": _filters(6)}] * 4}, "TOO_MANY_FILTERS"),
        (key_filter("IN", values=[str(n) for n in range(101)]), "TOO_MANY_VALUES"),
        (key_filter("CONTAINS_TOKEN", value="k"), "INVALID_OPERATOR"),
        ({"limit": 201}, "INVALID_LIMIT"),
    ],
    ids=["groups", "filters-in-group", "filters-in-all", "in-values", "op", "limit"],
)
def test_search_rejects_out_of_bounds_request(
    sdk: Sdk, body: dict[str, Any], code: str
) -> None:
    with pytest.raises(EmailsApiException) as raised:
        search_emails(sdk, body)

    assert rejection(raised.value) == (400, "VALIDATION_ERROR", [code])


# -- test hooks --------------------------------------------------------------


def test_next_replies_answers_the_next_request_only(
    fake: FakeHubSpot, sdk: Sdk
) -> None:
    outage = {"status": "error", "message": "down", "category": "INTERNAL_ERROR"}
    fake.next_replies.append(Reply(503, outage))

    with pytest.raises(EmailsApiException) as raised:
        create_email(sdk, email_input())
    created = create_email(sdk, email_input())

    assert (raised.value.status, json.loads(raised.value.body)) == (503, outage)
    assert [record["id"] for record in fake.created("emails")] == [created.id]
    assert fake.calls == collections.Counter({"POST /crm/v3/objects/emails": 2})


def test_concurrent_creates_get_unique_ids(fake: FakeHubSpot, sdk: Sdk) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        created = list(pool.map(lambda _: create_email(sdk, email_input()), range(40)))

    ids = sorted(int(item.id) for item in created)
    assert ids == list(range(50_000_000_001, 50_000_000_041))
    assert len(fake.created("emails")) == 40


def test_answers_pass_sdk_strict_model_validation(fake: FakeHubSpot) -> None:
    inputs = [traced("good", email_input()), traced("bad", {"properties": {}})]

    with connect(fake, client_side_validation=True) as sdk:
        created = create_email(sdk, email_input())
        batch, _, _ = create_emails(sdk, inputs)
        found = search_emails(sdk, {"limit": 1, "properties": ["hs_email_subject"]})

    assert created.archived is False
    assert (batch.num_errors, batch.errors[0].links) == (1, {})
    assert (found.total, found.paging.next.after) == (2, "1")
