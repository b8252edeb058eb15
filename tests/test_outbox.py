"""The outbox worker's housekeeping: retention."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

from adapters.local import LocalAdapter
from bridge.delivery import Delivery, Timing
from bridge.journal import Journal
from bridge.models import ActivityRequest
from bridge.outbox import Outbox
from bridge.store import Store
from bridge.throttle import Throttle
from tests.conftest import example_activity

DAY = 86_400.0


def test_outbox_prunes_finished_rows_past_retention(tmp_path: Path) -> None:
    store = Store(tmp_path / "journal.sqlite3")
    now = time.time()
    for n, age in enumerate([40 * DAY, 31 * DAY, 29 * DAY, 1 * DAY]):
        body = example_activity(metadata={"messageId": f"m-{n}"})
        activity = ActivityRequest.model_validate(body).normalise(datetime.now(UTC))
        store.claim(activity, now - age, 40 * DAY, 30)
        store.record([(activity.key, f"crm-{n}")], [], now - age)

    async def one_pass() -> int:
        journal = Journal(store)
        adapter = LocalAdapter(tmp_path / "local.sqlite3")
        delivery = Delivery(
            adapter, journal, Throttle("local", 1), Timing(1, 1, 1), 10, 1
        )
        outbox = Outbox(journal, delivery, poll_seconds=1, retention=30 * DAY)
        await outbox.tick()
        delivered = await journal.run(lambda s: s.counts()["delivered"])
        await delivery.close(0)
        journal.close()
        return delivered

    delivered = asyncio.run(one_pass())

    assert delivered == 2
