"""Pacing, holds and rate-limit facts, on the throttles alone."""

from __future__ import annotations

import asyncio
import time

from bridge.errors import CrmQuotaExhausted, CrmThrottled
from bridge.models import Limits
from bridge.throttle import HubSpotThrottle, SalesforceThrottle, Throttle


def busiest_window(times: list[float], window: float) -> int:
    """The most events inside any span of ``window`` seconds."""
    return max(
        sum(1 for other in times if start <= other < start + window) for start in times
    )


def test_hubspot_pacing_never_exceeds_the_rolling_window() -> None:
    async def fire() -> list[float]:
        throttle = HubSpotThrottle(20, 1.0, max_concurrency=50)
        times = []
        for _ in range(45):
            await throttle.acquire()
            times.append(time.monotonic())
            throttle.release()
        return times

    times = asyncio.run(fire())

    assert busiest_window(times, 1.0) <= 20
    assert times[-1] - times[0] < 3.0


def test_hubspot_headers_reshape_the_bucket_and_hold_when_short() -> None:
    async def run() -> tuple[float, float]:
        throttle = HubSpotThrottle(100, 10.0, max_concurrency=10)
        for _ in range(4):
            await throttle.acquire()
        throttle.observe(Limits(max=10, remaining=0, interval=1.0))
        held = throttle.held_for
        for _ in range(4):
            throttle.release()
        started = time.monotonic()
        await throttle.acquire()
        return held, time.monotonic() - started

    held, waited = asyncio.run(run())

    assert 0.25 < held <= 0.3
    assert waited >= 0.2


def test_rate_limit_answers_hold_every_call_for_their_wait() -> None:
    def limited(policy: str, wait: float) -> CrmThrottled | CrmQuotaExhausted:
        kind = CrmQuotaExhausted if policy == "DAILY" else CrmThrottled
        return kind("x", backend="hubspot", operation="create", retry_after=wait)

    throttle = Throttle("hubspot", 1)

    throttle.penalize(limited("TEN_SECONDLY_ROLLING", 10.0))
    short = throttle.held_for
    throttle.penalize(limited("DAILY", 3600.0))
    long = throttle.held_for
    throttle.penalize(limited("TEN_SECONDLY_ROLLING", 10.0))

    assert 9.9 < short <= 10.0
    assert 3599 < long <= 3600
    assert throttle.held_for > 3500


def test_concurrency_limit_without_a_wait_holds_nothing() -> None:
    throttle = Throttle("salesforce", 1)

    throttle.penalize(CrmThrottled("x", backend="salesforce", operation="write"))

    assert throttle.held_for == 0


def test_salesforce_budget_holds_new_work_past_its_share() -> None:
    throttle = SalesforceThrottle(10, budget_share=0.9, recheck_seconds=300)

    throttle.observe(Limits(used=8_999, limit=10_000))
    before = throttle.held_for
    throttle.observe(Limits(used=9_000, limit=10_000))

    assert before == 0
    assert 299 < throttle.held_for <= 300
