"""Building the running parts from the settings: journal, adapter, throttle,
delivery and outbox, opened and closed in order."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from adapters.base import Adapter
from bridge.config import Settings
from bridge.delivery import Delivery, Timing
from bridge.journal import Journal
from bridge.outbox import Outbox
from bridge.store import Store
from bridge.throttle import HubSpotThrottle, SalesforceThrottle, Throttle

log = logging.getLogger(__name__)

#: The embedded backend writes to local disk: a few calls at once are plenty.
LOCAL_CONCURRENCY = 4
#: How long a Salesforce hold lasts before one call checks the budget again.
BUDGET_RECHECK_SECONDS = 300.0


def build_adapter(settings: Settings) -> Adapter:
    """The adapter of ``[crm] backend``; vendor modules load only when chosen."""
    timeouts = (settings.crm.connect_timeout, settings.crm.read_timeout)
    backend = settings.crm.backend
    if backend == "hubspot":
        from adapters.hubspot import HubSpotAdapter

        token = settings.secrets.hubspot_access_token
        assert token is not None, "checked when the settings were loaded"
        return HubSpotAdapter(settings.hubspot, token.get_secret_value(), timeouts)
    if backend == "salesforce":
        from adapters.salesforce import SalesforceAdapter

        return SalesforceAdapter(settings.salesforce, settings.secrets, timeouts)
    from adapters.local import LocalAdapter

    return LocalAdapter(settings.local.path)


def build_throttle(settings: Settings) -> Throttle:
    backend = settings.crm.backend
    if backend == "hubspot":
        hubspot = settings.hubspot
        return HubSpotThrottle(hubspot.requests_per_10s, 10.0, hubspot.max_concurrency)
    if backend == "salesforce":
        salesforce = settings.salesforce
        return SalesforceThrottle(
            salesforce.max_concurrency,
            salesforce.daily_budget_share,
            BUDGET_RECHECK_SECONDS,
        )
    return Throttle("local", LOCAL_CONCURRENCY)


@dataclass
class Runtime:
    """Everything ``serve`` runs besides the HTTP surface."""

    settings: Settings
    journal: Journal
    adapter: Adapter
    delivery: Delivery
    outbox: Outbox

    @classmethod
    async def open(cls, settings: Settings, adapter: Adapter | None = None) -> Runtime:
        """Lock and open the journal, build the adapter, start the outbox."""
        store = Store(settings.store.path, settings.store.synchronous)
        store.lock_exclusive()
        journal = Journal(store)
        adapter = adapter or build_adapter(settings)
        throttle = build_throttle(settings)
        crm = settings.crm
        timing = Timing(
            deadline=crm.deadline_seconds,
            lease=crm.deadline_seconds + crm.connect_timeout + crm.read_timeout,
            backoff_max=settings.outbox.backoff_max_seconds,
            find_settle=settings.hubspot.dedupe_settle_seconds,
        )
        workers = _concurrency(settings) + 2
        delivery = Delivery(
            adapter, journal, throttle, timing, settings.outbox.max_in_memory, workers
        )
        outbox = Outbox(
            journal,
            delivery,
            poll_seconds=settings.outbox.poll_seconds,
            retention=settings.store.retention.total_seconds(),
        )
        await outbox.start()
        log.info("serving backend=%s store=%s", adapter.name, settings.store.path)
        return cls(settings, journal, adapter, delivery, outbox)

    async def close(self) -> None:
        """Stop taking work, let calls in flight finish, close everything."""
        started = time.monotonic()
        await self.outbox.stop()
        await self.delivery.close(self.settings.server.shutdown_grace_seconds)
        self.adapter.close()
        self.journal.close()
        log.info("stopped in %.1f s", time.monotonic() - started)


def _concurrency(settings: Settings) -> int:
    backend = settings.crm.backend
    if backend == "hubspot":
        return settings.hubspot.max_concurrency
    if backend == "salesforce":
        return settings.salesforce.max_concurrency
    return LOCAL_CONCURRENCY
