"""Benchmark: the bridge's own overhead, and throughput at the CRMs' rate limits.

Everything runs on this machine: the fakes of the test suite (with latency and
limits set here) in this process, the bridge as a child process running
``crm-bridge serve``, and the load generator (aiohttp) in this process::

    python -m bench.throughput                      # the full table
    python -m bench.throughput --activities 2000 --clients 200
    python -m bench.throughput --hubspot-requests-per-10s 190 --salesforce-latency-ms 50

Figures printed beside their bounds: the rate limit times the batch size, and
Little's law (clients / CRM latency).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from hubspot import HubSpot

from adapters import hubspot_mapping
from bench.bridge_process import API_KEY, BridgeProcess, free_port, write_config
from bench.crm import HUBSPOT_TOKEN, FakeCrm, start_crm
from bridge.models import ActivityRequest
from tests.fakes.hubspot import FakeHubSpot


@dataclass
class Run:
    """One load run's figures."""

    name: str
    activities: int
    seconds: float
    latencies: list[float]
    client_errors: int
    crm_429s: int = 0
    drained_seconds: float | None = None
    peak_rss_mb: float = 0.0
    bounds: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.activities / self.seconds


def body(n: int, ids: dict[str, str], run: str) -> dict[str, Any]:
    return {
        "type": "LINKEDIN",
        "subject": "[1/3] [FROM Acme Corp] John Smith",
        "body": f"Hi Jane, message {n} of run {run}.",
        "direction": "OUTBOUND",
        "occurredAt": "2026-01-01T09:00:00Z",
        "metadata": {"messageId": f"{run}-{n}"},
        **ids,
    }


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# -- overhead ------------------------------------------------------------------


#: Rounds run before measuring: the first calls load code lazily.
WARM_UP = 10


@dataclass
class Overhead:
    """Sequential latencies (ms) of the SDK call alone and through the bridge,
    and the bridge's CPU time per activity (ms), its own SDK call included."""

    direct: list[float]
    through: list[float]
    bridge_cpu_ms: float


def overhead(workdir: Path, count: int, latency: float) -> Overhead:
    """One activity at a time, directly and through the bridge.

    The two alternate, one of each per round, so that whatever else the machine
    does weighs on both alike.
    """
    with start_crm("hubspot", workdir, dedupe=False, latency=latency) as crm:
        # Sequential calls run at up to 1/latency per second, above a HubSpot
        # limit; the fake enforces none here, so the bridge's pacing is lifted.
        crm.sections["hubspot"]["requests_per_10s"] = 100_000
        with _bridge(crm, workdir, "overhead") as bridge:
            direct = _DirectSdk(crm)
            through = _ThroughBridge(bridge.url, crm)
            for n in range(WARM_UP):
                direct(-1 - n), through(-1 - n)
            process = psutil.Process(bridge.pid)
            before = process.cpu_times()
            rounds = [(direct(n), through(n)) for n in range(count)]
            after = process.cpu_times()
            through.close()
    cpu = (after.user + after.system) - (before.user + before.system)
    return Overhead([d for d, _ in rounds], [t for _, t in rounds], cpu * 1000 / count)


class _DirectSdk:
    """The bridge's own SDK call for one activity, made from here: the same
    request, the same raw answer read as JSON."""

    def __init__(self, crm: FakeCrm) -> None:
        client = HubSpot(access_token=HUBSPOT_TOKEN, host=crm.url, retry=False)
        self._api = client.crm.objects.communications.basic_api
        self._ids = crm.ids

    def __call__(self, n: int) -> float:
        request = ActivityRequest.model_validate(body(n, self._ids, "direct"))
        create = hubspot_mapping.create_input(request.normalise(datetime.now(UTC)))
        started = time.perf_counter()
        answer = self._api.create(
            simple_public_object_input_for_create=create,
            _request_timeout=(5, 30),
            _preload_content=False,
        )
        json.loads(answer.data)
        answer.release_conn()
        return (time.perf_counter() - started) * 1000


class _ThroughBridge:
    """One activity posted to the bridge over a kept-alive connection."""

    def __init__(self, url: str, crm: FakeCrm) -> None:
        host, port = url.removeprefix("http://").split(":")
        self._connection = http.client.HTTPConnection(host, int(port))
        self._headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}
        self._ids = crm.ids

    def __call__(self, n: int) -> float:
        payload = json.dumps(body(n, self._ids, "bridge"))
        started = time.perf_counter()
        self._connection.request("POST", "/activities", payload, self._headers)
        answer = self._connection.getresponse()
        answer.read()
        elapsed = (time.perf_counter() - started) * 1000
        if answer.status != 201:
            raise RuntimeError(f"the bridge answered {answer.status}")
        return elapsed

    def close(self) -> None:
        self._connection.close()


# -- throughput ----------------------------------------------------------------


async def _load(
    url: str, bodies: list[dict[str, Any]], clients: int
) -> tuple[list[float], int, float]:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for item in bodies:
        queue.put_nowait(item)
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=120)
    headers = {"X-API-Key": API_KEY}

    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=headers
    ) as session:

        async def client() -> None:
            nonlocal errors
            while not queue.empty():
                item = queue.get_nowait()
                started = time.perf_counter()
                try:
                    async with session.post(f"{url}/activities", json=item) as answer:
                        await answer.read()
                        ok = answer.status in (200, 201, 202)
                except aiohttp.ClientError:
                    ok = False
                latencies.append((time.perf_counter() - started) * 1000)
                errors += not ok

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, errors, time.perf_counter() - started


def _run_load(
    url: str, bodies: list[dict[str, Any]], clients: int
) -> tuple[list[float], int, float]:
    return asyncio.run(_load(url, bodies, clients))


def _load_elsewhere(
    url: str, bodies: list[dict[str, Any]], clients: int
) -> tuple[list[float], int, float]:
    """The load from a process of its own, so that the clients and the fake CRM
    (served from this one) do not share an interpreter lock."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(_run_load, url, bodies, clients).result()


@contextmanager
def _bridge(
    crm: FakeCrm, workdir: Path, name: str, **crm_settings: Any
) -> Iterator[BridgeProcess]:
    port = free_port()
    directory = workdir / name
    directory.mkdir()
    sections = {
        "server": {"port": port, "access_log": False},
        "crm": {"backend": crm.backend, **crm_settings},
        **crm.sections,
    }
    config = write_config(directory, sections)
    bridge = BridgeProcess(config, port, crm.environ, directory / "bridge.log")
    bridge.start()
    try:
        yield bridge
    finally:
        bridge.stop()


class _PeakRss:
    """Samples a process's resident memory until stopped."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.peak = max(self.peak, self._process.memory_info().rss)
            except psutil.Error:
                return

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak / 1_048_576


@dataclass(frozen=True)
class Fakes:
    """The fake CRMs' latency (seconds) and limits; defaults are the issue's."""

    overhead_latency: float = 0.02
    hubspot_latency: float = 0.1
    hubspot_requests_per_10s: int = 100
    salesforce_latency: float = 0.2
    salesforce_max_concurrency: int = 25

    def latency(self, backend: str) -> float:
        return self.hubspot_latency if backend == "hubspot" else self.salesforce_latency

    def bounds(self, backend: str, clients: int) -> dict[str, float]:
        """Requests per second the CRM allows times the activities one carries,
        and Little's law."""
        latency = self.latency(backend)
        if backend == "hubspot":
            limit = self.hubspot_requests_per_10s / 10 * HUBSPOT_BATCH
        else:
            limit = self.salesforce_max_concurrency / latency * SALESFORCE_BATCH
        return {"limit": limit, "little": clients / latency}

    def describe(self) -> str:
        return (
            f"fake HubSpot {self.hubspot_requests_per_10s} requests / 10 s, "
            f"{self.hubspot_latency * 1000:.0f} ms; fake Salesforce at most "
            f"{self.salesforce_max_concurrency} at once, "
            f"{self.salesforce_latency * 1000:.0f} ms"
        )


#: The largest batches the CRMs take: HubSpot batch create, sObject Collections.
HUBSPOT_BATCH = 100
SALESFORCE_BATCH = 200


def throughput(
    workdir: Path,
    backend: str,
    activities: int,
    clients: int,
    fakes: Fakes,
    accept: bool = False,
) -> Run:
    """One load run against a fake with the given latency and limits."""
    mode = "accept" if accept else "fail"
    name = f"{backend}-{mode}"
    hubspot = backend == "hubspot"
    with start_crm(
        backend,
        workdir,
        latency=fakes.latency(backend),
        requests_per_10s=fakes.hubspot_requests_per_10s if hubspot else None,
        max_concurrency=None if hubspot else fakes.salesforce_max_concurrency,
    ) as crm:
        settings = {"when_unavailable": mode, "deadline_seconds": 30}
        with _bridge(crm, workdir, name, **settings) as bridge:
            assert bridge.pid is not None
            rss = _PeakRss(bridge.pid)
            bodies = [body(n, crm.ids, name) for n in range(activities)]
            latencies, errors, seconds = _load_elsewhere(bridge.url, bodies, clients)
            drained = _wait_drained(crm, activities, seconds) if accept else None
            peak = rss.stop()
        run = Run(name, activities, seconds, latencies, errors)
        run.drained_seconds = drained
        run.peak_rss_mb = peak
        if isinstance(crm.fake, FakeHubSpot):
            run.crm_429s = crm.fake.rate_limited
        run.bounds = fakes.bounds(backend, clients)
    return run


def _wait_drained(crm: FakeCrm, activities: int, loaded: float) -> float:
    started = time.perf_counter() - loaded
    while len(crm.written()) < activities:
        time.sleep(0.02)
    return time.perf_counter() - started


# -- report --------------------------------------------------------------------


def report(sequential: Overhead, runs: list[Run], fakes: Fakes) -> Iterator[str]:
    direct, through = sequential.direct, sequential.through
    direct_median = statistics.median(direct)
    through_median = statistics.median(through)
    yield (
        "Overhead: one activity, sequential, fake HubSpot with "
        f"{fakes.overhead_latency * 1000:.0f} ms latency"
    )
    yield f"  {'':22}{'median ms':>10}{'p99 ms':>10}"
    for name, values in (("SDK call alone", direct), ("through the bridge", through)):
        median, p99 = statistics.median(values), percentile(values, 0.99)
        yield f"  {name:22}{median:>10.2f}{p99:>10.2f}"
    yield (
        f"  overhead {through_median - direct_median:.2f} ms median, "
        f"ratio {through_median / direct_median:.3f}"
    )
    yield (
        f"  bridge CPU {sequential.bridge_cpu_ms:.2f} ms per activity, "
        "its SDK call included"
    )
    yield ""
    yield f"Throughput: {fakes.describe()}"
    yield (
        f"  {'run':18}{'act/s':>9}{'bound: limit':>14}{'bound: Little':>15}"
        f"{'429s':>6}{'errors':>8}{'p50 ms':>9}{'p99 ms':>9}{'drained/s':>11}"
        f"{'RSS MB':>8}"
    )
    for run in runs:
        drained = run.activities / run.drained_seconds if run.drained_seconds else 0
        yield (
            f"  {run.name:18}{run.rate:>9.0f}{run.bounds['limit']:>14.0f}"
            f"{run.bounds['little']:>15.0f}{run.crm_429s:>6}{run.client_errors:>8}"
            f"{percentile(run.latencies, 0.5):>9.0f}"
            f"{percentile(run.latencies, 0.99):>9.0f}"
            f"{f'{drained:.0f}' if drained else '-':>11}{run.peak_rss_mb:>8.0f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--activities", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--overhead-count", type=int, default=300)
    parser.add_argument("--overhead-latency-ms", type=float, default=20)
    parser.add_argument("--hubspot-latency-ms", type=float, default=100)
    parser.add_argument("--hubspot-requests-per-10s", type=int, default=100)
    parser.add_argument("--salesforce-latency-ms", type=float, default=200)
    parser.add_argument("--salesforce-max-concurrency", type=int, default=25)
    args = parser.parse_args(argv)
    fakes = Fakes(
        overhead_latency=args.overhead_latency_ms / 1000,
        hubspot_latency=args.hubspot_latency_ms / 1000,
        hubspot_requests_per_10s=args.hubspot_requests_per_10s,
        salesforce_latency=args.salesforce_latency_ms / 1000,
        salesforce_max_concurrency=args.salesforce_max_concurrency,
    )
    with tempfile.TemporaryDirectory(prefix="crm-bridge-bench-") as name:
        workdir = Path(name)
        sequential = overhead(workdir, args.overhead_count, fakes.overhead_latency)
        runs = [
            throughput(workdir, backend, args.activities, args.clients, fakes, accept)
            for accept in (False, True)
            for backend in ("hubspot", "salesforce")
        ]
    for line in report(sequential, runs, fakes):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
