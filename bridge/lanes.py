"""Lanes: activities bound for one CRM object, batched while they wait.

Whenever the throttle grants a slot, everything queued in the lane (up to the
adapter's batch size) leaves in one call, so batches form by themselves while the
rate limit holds work back, and a lone activity at low load leaves at once. Each
result, or per-item error, goes back to the future of its own item.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bridge.errors import CrmUnavailable
from bridge.models import Activity

if TYPE_CHECKING:
    from bridge.delivery import Delivery

log = logging.getLogger(__name__)


@dataclass
class Item:
    """One activity waiting in a lane, and where its result goes."""

    activity: Activity
    in_doubt: bool
    future: asyncio.Future[str]
    #: The journal already marks this call as leaving (set when it was claimed).
    marked: bool = False


class Lane:
    """Activities bound for one CRM object, sent together when a slot frees."""

    def __init__(self, name: str, delivery: Delivery) -> None:
        self.name = name
        self._delivery = delivery
        self._queue: collections.deque[Item] = collections.deque()
        self._ready = asyncio.Event()
        self._sends: set[asyncio.Task[None]] = set()
        self._task = asyncio.create_task(self._run(), name=f"lane-{name}")

    def submit(
        self, activity: Activity, in_doubt: bool, marked: bool = False
    ) -> asyncio.Future[str]:
        future = asyncio.get_running_loop().create_future()
        self._queue.append(Item(activity, in_doubt, future, marked))
        self._ready.set()
        return future

    async def close(self, grace: float) -> None:
        self._task.cancel()
        if self._sends:
            await asyncio.wait(self._sends, timeout=grace)

    async def _run(self) -> None:
        throttle = self._delivery.throttle
        while True:
            await self._ready.wait()
            await throttle.acquire()
            batch = self._take()
            if not batch:
                throttle.release()
                continue
            send = asyncio.create_task(self._send(batch))
            self._sends.add(send)
            send.add_done_callback(self._sends.discard)

    def _take(self) -> list[Item]:
        batch: list[Item] = []
        limit = self._delivery.adapter.batch_size
        while self._queue and len(batch) < limit:
            item = self._queue.popleft()
            if not item.future.done():
                batch.append(item)
        if not self._queue:
            self._ready.clear()
        return batch

    async def _send(self, batch: list[Item]) -> None:
        delivery = self._delivery
        try:
            results = await delivery.send(self.name, batch)
        except asyncio.CancelledError:
            for item in batch:
                item.future.cancel()
            raise
        except Exception as error:
            # The journal failed (adapter errors come back as results): the
            # call may not even have left. Each cycle retries its own item.
            log.error("%s: delivery failed (%s)", self.name, type(error).__name__)
            failed = CrmUnavailable(
                "The delivery could not be recorded.",
                backend=delivery.adapter.name,
                operation="journal",
                code=type(error).__name__,
            )
            results = [failed] * len(batch)
        finally:
            delivery.throttle.release()
        settle(batch, results)


def settle(batch: Sequence[Item], results: Sequence[str | BaseException]) -> None:
    for item, result in zip(batch, results, strict=True):
        if item.future.done():
            continue
        if isinstance(result, str):
            item.future.set_result(result)
        else:
            item.future.set_exception(result)
