"""The bridge's lean path: no CRM call or disk write holds up the event loop, and
the SDK client is built once, not per request.

The app runs under uvicorn on an asyncio loop in debug mode, which logs every
callback that keeps the loop busy longer than ``slow_callback_duration``. The fake
HubSpot answers after 300 ms, so a CRM call made on the loop would show.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx2 as httpx
import pytest
import uvicorn
from hubspot import HubSpot

import adapters.hubspot
from bridge.app import create_app
from bridge.config import Settings
from tests.conftest import API_KEY, SettingsFactory, example_activity
from tests.fakes.hubspot import FakeHubSpot
from tests.fakes.server import Faults, serve

#: A callback running this long is a blocking call on the loop.
SLOW = 0.1
CRM_LATENCY = 0.3
IDS = {"contactId": "101", "companyId": "201", "ownerId": "301"}


class _Loop:
    """An asyncio loop in debug mode on a thread of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.set_debug(True)
        self.loop.slow_callback_duration = SLOW

    def run(self, server: uvicorn.Server) -> threading.Thread:
        thread = threading.Thread(
            target=self.loop.run_until_complete, args=(server.serve(),), daemon=True
        )
        thread.start()
        return thread


@contextmanager
def bridge_on(loop: _Loop, settings: Settings) -> Iterator[str]:
    """The bridge served by uvicorn on ``loop``; yields its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_config=None
    )
    server = uvicorn.Server(config)
    thread = loop.run(server)
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the bridge did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        loop.loop.close()


def slow_callbacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "asyncio" and " took " in record.getMessage()
    ]


def test_crm_calls_and_journal_writes_never_block_the_loop(
    make_settings: SettingsFactory,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[object] = []

    class CountedHubSpot(HubSpot):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            built.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(adapters.hubspot, "HubSpot", CountedHubSpot)
    caplog.set_level(logging.WARNING, logger="asyncio")
    fake = FakeHubSpot(tokens={"pat-na1-test"})
    loop = _Loop()
    with serve(fake, Faults(latency=CRM_LATENCY)) as url:
        settings = make_settings(crm={"backend": "hubspot"}, hubspot={"base_url": url})
        with bridge_on(loop, settings) as bridge:

            def post(n: int) -> int:
                activity = example_activity(metadata={"messageId": f"m-{n}"}, **IDS)
                answer = httpx.post(
                    f"{bridge}/activities",
                    json=activity,
                    headers={"X-API-Key": API_KEY},
                    timeout=30,
                )
                return answer.status_code

            with ThreadPoolExecutor(8) as pool:
                statuses = list(pool.map(post, range(24)))
            assert statuses == [201] * 24
            assert len(fake.created("communications")) == 24
            assert slow_callbacks(caplog) == []

            # The check itself: a callback that does block is reported.
            loop.loop.call_soon_threadsafe(time.sleep, SLOW * 2)
            time.sleep(SLOW * 4)
            assert len(slow_callbacks(caplog)) == 1

    assert len(built) == 1
