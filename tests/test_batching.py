"""Natural batching: while the throttle holds work back, queued activities leave
together, and every result or per-item error goes back to its own request."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from bench.bridge_process import API_KEY, BridgeProcess, free_port, write_config
from tests.conftest import HUBSPOT_TOKEN, example_activity
from tests.fakes.hubspot import FakeHubSpot
from tests.fakes.salesforce import FakeSalesforce
from tests.fakes.server import Faults, serve
from tests.fakes.tls import build_tls

HUBSPOT_IDS = {"contactId": "101", "companyId": "201", "ownerId": "301"}


def post_all(url: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    def post(body: dict[str, Any]) -> httpx.Response:
        return httpx.post(
            f"{url}/activities", json=body, headers={"X-API-Key": API_KEY}, timeout=60
        )

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(post, bodies))


@pytest.fixture
def running(tmp_path: Path) -> Iterator[list[BridgeProcess]]:
    bridges: list[BridgeProcess] = []
    yield bridges
    for bridge in bridges:
        bridge.stop()


def start_bridge(
    tmp_path: Path, running: list[BridgeProcess], env: dict[str, str], **sections: Any
) -> BridgeProcess:
    port = free_port()
    config = write_config(
        tmp_path, {"server": {"port": port, "access_log": False}, **sections}
    )
    bridge = BridgeProcess(config, port, env, tmp_path / "bridge.log")
    bridge.start()
    running.append(bridge)
    return bridge


def test_hubspot_batches_under_its_rate_limit_and_answers_each_request(
    tmp_path: Path, running: list[BridgeProcess]
) -> None:
    fake = FakeHubSpot(tokens={HUBSPOT_TOKEN}, requests_per_10s=10)
    bodies = [
        example_activity(metadata={"messageId": f"m-{n}"}, **HUBSPOT_IDS)
        for n in range(60)
    ]
    bodies[7]["ownerId"] = "999"

    with serve(fake, Faults(latency=0.05)) as url:
        bridge = start_bridge(
            tmp_path,
            running,
            {"HUBSPOT_ACCESS_TOKEN": HUBSPOT_TOKEN},
            crm={"backend": "hubspot", "deadline_seconds": 30},
            hubspot={"base_url": url, "requests_per_10s": 10},
        )
        answers = post_all(bridge.url, bodies)

    created = fake.created("communications")
    ids = [answer.json().get("id") for answer in answers]
    assert [a.status_code for a in answers] == [201] * 7 + [422] + [201] * 52
    assert answers[7].json()["code"] == "INVALID_OWNER_ID"
    assert sorted(i for i in ids if i) == sorted(c["id"] for c in created)
    assert len(created) == 59
    assert fake.rate_limited == 0
    assert fake.calls["POST /crm/v3/objects/communications/batch/create"] <= 5


def test_salesforce_sends_collections_while_calls_are_busy(
    tmp_path: Path, running: list[BridgeProcess]
) -> None:
    tls = build_tls(tmp_path)
    fake = FakeSalesforce(
        client_id="c", client_secret="s", transaction_seconds=0.2, max_concurrency=2
    )
    ids = {
        "contactId": fake.contact_ids[0],
        "companyId": fake.account_ids[0],
        "ownerId": fake.user_ids[0],
    }
    bodies = [
        example_activity(metadata={"messageId": f"m-{n}"}, **ids) for n in range(80)
    ]

    with serve(fake, Faults(exempt=("/services/oauth2",)), tls.server_context) as url:
        fake.base_url = url
        bridge = start_bridge(
            tmp_path,
            running,
            {"SALESFORCE_CONSUMER_KEY": "c", "SALESFORCE_CONSUMER_SECRET": "s"},
            crm={"backend": "salesforce", "deadline_seconds": 30},
            salesforce={
                "auth": "client_credentials",
                "domain": url,
                "ca_bundle": str(tls.ca_path),
                "max_concurrency": 2,
            },
        )
        answers = post_all(bridge.url, bodies)

    assert [a.status_code for a in answers] == [201] * 80
    assert sorted(a.json()["id"] for a in answers) == sorted(fake.tasks)
    collections = fake.calls["POST /services/data/vXX.X/composite/sobjects"]
    assert 1 <= collections < 20
