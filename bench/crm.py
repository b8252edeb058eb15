"""The fake CRMs of the test suite, set up for soaks and benchmarks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fakes.hubspot import FakeHubSpot
from tests.fakes.salesforce import FakeSalesforce
from tests.fakes.server import Faults, serve
from tests.fakes.tls import build_tls

# Credentials the fakes accept; nothing real.
HUBSPOT_TOKEN = "pat-bench-token"  # noqa: S105
CLIENT_ID = "3MVG9-bench-client"
CLIENT_SECRET = "bench-secret"  # noqa: S105
EXTERNAL_ID = "Enginy_Key__c"
DEDUPE_PROPERTY = "crm_bridge_key"


@dataclass
class FakeCrm:
    """A served fake and what a bridge needs to use it."""

    backend: str
    fake: FakeHubSpot | FakeSalesforce
    faults: Faults
    url: str
    ids: dict[str, str]
    sections: dict[str, dict[str, Any]]
    environ: dict[str, str] = field(default_factory=dict)

    def written(self) -> list[tuple[str, str]]:
        """``(id, text)`` of every object the CRM holds; text carries the body."""
        if isinstance(self.fake, FakeSalesforce):
            with self.fake.lock:
                return [
                    (task_id, str(task.get("Description", "")))
                    for task_id, task in self.fake.tasks.items()
                ]
        return [
            (str(obj["id"]), str(obj["properties"].get("hs_communication_body", "")))
            for obj in self.fake.created("communications")
        ]


@contextmanager
def start_crm(
    backend: str,
    workdir: Path,
    *,
    dedupe: bool = True,
    latency: float = 0.0,
    requests_per_10s: int | None = None,
    max_concurrency: int | None = None,
) -> Iterator[FakeCrm]:
    """Serve the fake of ``backend`` on 127.0.0.1 until the block ends."""
    faults = Faults(latency=latency, exempt=("/services/oauth2",))
    with ExitStack() as stack:
        if backend == "hubspot":
            yield _hubspot(stack, faults, dedupe, requests_per_10s)
        else:
            yield _salesforce(stack, faults, workdir, dedupe, max_concurrency, latency)


def _hubspot(
    stack: ExitStack, faults: Faults, dedupe: bool, requests_per_10s: int | None
) -> FakeCrm:
    fake = FakeHubSpot(
        tokens={HUBSPOT_TOKEN},
        requests_per_10s=requests_per_10s,
        search_per_second=None,
        custom_properties={DEDUPE_PROPERTY},
    )
    # A Retry-After keeps injected 429s from holding work for a whole window.
    fake.throttle_retry_after = 1
    url = stack.enter_context(serve(fake, faults))
    hubspot: dict[str, Any] = {"base_url": url, "dedupe_settle_seconds": 0.2}
    if dedupe:
        hubspot["dedupe_property"] = DEDUPE_PROPERTY
    if requests_per_10s:
        hubspot["requests_per_10s"] = requests_per_10s
    return FakeCrm(
        "hubspot",
        fake,
        faults,
        url,
        {"contactId": "101", "companyId": "201", "ownerId": "301"},
        {"hubspot": hubspot},
        {"HUBSPOT_ACCESS_TOKEN": HUBSPOT_TOKEN},
    )


def _salesforce(
    stack: ExitStack,
    faults: Faults,
    workdir: Path,
    dedupe: bool,
    max_concurrency: int | None,
    latency: float,
) -> FakeCrm:
    tls = build_tls(workdir)
    fake = FakeSalesforce(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        external_id_field=EXTERNAL_ID,
        max_concurrency=max_concurrency,
        transaction_seconds=latency,
        daily_api_limit=10_000_000,
    )
    # The fake holds its own latency inside the concurrency count.
    faults.latency = 0.0
    url = stack.enter_context(serve(fake, faults, tls.server_context))
    fake.base_url = url
    salesforce: dict[str, Any] = {
        "auth": "client_credentials",
        "domain": url,
        "ca_bundle": str(tls.ca_path),
    }
    if dedupe:
        salesforce["external_id_field"] = EXTERNAL_ID
    ids = {
        "contactId": fake.contact_ids[0],
        "companyId": fake.account_ids[0],
        "ownerId": fake.user_ids[0],
    }
    environ = {
        "SALESFORCE_CONSUMER_KEY": CLIENT_ID,
        "SALESFORCE_CONSUMER_SECRET": CLIENT_SECRET,
    }
    return FakeCrm(
        "salesforce", fake, faults, url, ids, {"salesforce": salesforce}, environ
    )
