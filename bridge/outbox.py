"""The outbox worker: delivers what the journal holds and requests did not finish.

Inside ``serve`` it recovers rows cut off by a crash, then every ``poll_seconds``:
turns rows older than ``[outbox] max_age`` into dead letters, starts a delivery
cycle for each row that is due (as many as memory allows), and once an hour
prunes delivered and dead rows older than ``[store] retention``.
"""

from __future__ import annotations

import asyncio
import logging
import time

from bridge.delivery import Delivery
from bridge.journal import Journal

log = logging.getLogger(__name__)

PRUNE_EVERY = 3600.0


class Outbox:
    """Drives pending rows to delivery until they are delivered or too old."""

    def __init__(
        self,
        journal: Journal,
        delivery: Delivery,
        *,
        poll_seconds: float,
        retention: float,
    ) -> None:
        self._journal = journal
        self._delivery = delivery
        self._poll = poll_seconds
        self._retention = retention
        self._pruned_at = 0.0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Recover after a restart, then run in the background."""
        now = time.time()
        in_doubt = await self._journal.run(lambda store: store.recover(now))
        if in_doubt:
            log.warning(
                "%d activities were mid-call at the last stop: in doubt", in_doubt
            )
        self._task = asyncio.create_task(self._run(), name="outbox")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception as error:
                log.error("outbox pass failed (%s)", type(error).__name__)
            await asyncio.sleep(self._poll)

    async def tick(self) -> None:
        """One pass: expire, start what is due, prune now and then."""
        now = time.time()
        for entry in await self._journal.run(lambda store: store.expire(now)):
            log.error(
                "dead letter after max_age attempts=%d reason=%s key=%s",
                entry.attempts,
                entry.reason or "none",
                entry.key_hash[:12],
            )

        free = self._delivery.free
        if free:
            due = await self._journal.run(lambda store: store.due(now, free))
            for entry in due:
                if entry.activity is not None:
                    self._delivery.start(entry.activity, entry.in_doubt, entry.attempts)

        if now - self._pruned_at >= PRUNE_EVERY:
            before = now - self._retention
            pruned = await self._journal.run(lambda store: store.prune(before))
            self._pruned_at = now
            if pruned:
                log.info("pruned %d rows older than the retention period", pruned)
