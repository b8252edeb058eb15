"""Chaos soak: nothing lost, nothing twice, while the CRM fails and the bridge dies.

Concurrent clients send N unique activities plus a share of duplicate re-sends to
a bridge running as a child process, retrying on 503 and connection errors. The
fake CRM injects 429s, 5xx, dropped connections (before and after processing)
and stalls past the read timeout, and the bridge is killed with SIGKILL and
restarted several times. At the end the soak compares what clients hold, what
the CRM holds and what the journal says::

    python -m bench.soak --backend salesforce --activities 5000 --kills 3
    python -m bench.soak --backend hubspot --dedupe

It prints a table and exits non-zero when anything was lost or duplicated
beyond the in-doubt resends the journal counted.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx

from bench.bridge_process import API_KEY, BridgeProcess, free_port, write_config
from bench.crm import FakeCrm, start_crm
from bridge.store import Store

CANARY = "the heron flies at midnight"
RATES = {"throttle": 0.10, "error": 0.10, "drop": 0.025, "lost": 0.025, "stall": 0.02}
_NUMBER = re.compile(r"Soak message (\d+):")


@dataclass
class SoakOptions:
    """What to run."""

    backend: str = "salesforce"
    activities: int = 1000
    duplicates: float = 0.2
    clients: int = 40
    kills: int = 3
    dedupe: bool = True
    read_timeout: float = 1.0
    seed: int = 7


@dataclass
class SoakReport:
    """What happened, and whether it is right."""

    options: SoakOptions
    sends: int = 0
    client_retries: int = 0
    kills: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    lost: int = 0
    duplicated: int = 0
    in_doubt_resends: int = 0
    wrong_ids: int = 0
    unexpected: Counter[int] = field(default_factory=Counter)
    journal: dict[str, int] = field(default_factory=dict)
    log_leaks: int = 0
    wall_seconds: float = 0.0

    @property
    def passed(self) -> bool:
        exact = self.options.dedupe or self.options.backend == "local"
        allowed = 0 if exact else self.in_doubt_resends
        journal_ok = self.journal.get("delivered") == self.options.activities and not (
            self.journal.get("pending") or self.journal.get("dead")
        )
        return (
            self.lost == 0
            and self.duplicated <= allowed
            and self.wrong_ids == 0
            and not self.unexpected
            and journal_ok
            and self.log_leaks == 0
        )

    def table(self) -> str:
        rows = [
            ("backend", self.options.backend),
            ("external id / dedupe property", "yes" if self.options.dedupe else "no"),
            ("unique activities", self.options.activities),
            ("sends (with duplicates)", self.sends),
            ("client retries", self.client_retries),
            ("faults injected", dict(sorted(self.faults.items()))),
            ("bridge kills (SIGKILL)", self.kills),
            ("lost", self.lost),
            ("duplicated in the CRM", self.duplicated),
            ("in-doubt resends counted", self.in_doubt_resends),
            ("clients holding a wrong id", self.wrong_ids),
            ("unexpected answers", dict(self.unexpected)),
            ("journal", self.journal),
            ("log lines with message text", self.log_leaks),
            ("wall time", f"{self.wall_seconds:.1f} s"),
            ("result", "PASS" if self.passed else "FAIL"),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def activity(n: int, crm: FakeCrm) -> dict[str, Any]:
    return {
        "type": "LINKEDIN",
        "subject": f"[1/1] [FROM Soak] Sender {n}",
        "body": f"Soak message {n}: {CANARY}",
        "direction": "OUTBOUND",
        "occurredAt": "2026-01-01T09:00:00Z",
        "metadata": {"messageId": f"soak-{n}"},
        **crm.ids,
    }


def key_of(n: int) -> str:
    return f"LINKEDIN:OUTBOUND:soak-{n}"


class _Load:
    """The clients: a shared queue of sends, the ids they were answered."""

    def __init__(self, options: SoakOptions, crm: FakeCrm, url: str) -> None:
        rng = random.Random(options.seed)
        extra = int(options.activities * options.duplicates)
        sends = list(range(options.activities))
        sends += [rng.randrange(options.activities) for _ in range(extra)]
        rng.shuffle(sends)
        self.queue: asyncio.Queue[int] = asyncio.Queue()
        for n in sends:
            self.queue.put_nowait(n)
        self.total = len(sends)
        self.done = 0
        self.ids: dict[int, set[str]] = {}
        self.retries = 0
        self.unexpected: Counter[int] = Counter()
        self._crm = crm
        self._url = url

    async def run(self, clients: int) -> None:
        async with httpx.AsyncClient(
            headers={"X-API-Key": API_KEY}, timeout=60
        ) as http:
            await asyncio.gather(*(self._client(http) for _ in range(clients)))

    async def _client(self, http: httpx.AsyncClient) -> None:
        while not self.queue.empty():
            n = self.queue.get_nowait()
            crm_id = await self._send(http, n)
            if crm_id is not None:
                self.ids.setdefault(n, set()).add(crm_id)
            self.done += 1

    async def _send(self, http: httpx.AsyncClient, n: int) -> str | None:
        body = activity(n, self._crm)
        while True:
            try:
                answer = await http.post(f"{self._url}/activities", json=body)
            except httpx.TransportError:
                answer = None
            if answer is not None and answer.status_code in (200, 201):
                return str(answer.json()["id"])
            if answer is not None and answer.status_code not in (500, 503):
                self.unexpected[answer.status_code] += 1
                return None
            # Enginy's retry policy is not published; a quick retry keeps the
            # soak short and the pressure on the bridge high.
            self.retries += 1
            await asyncio.sleep(0.2)


async def _kill_and_restart(
    load: _Load, bridge: BridgeProcess, kills: int, report: SoakReport
) -> None:
    for turn in range(1, kills + 1):
        target = load.total * turn // (kills + 1)
        while load.done < target:
            await asyncio.sleep(0.05)
        await asyncio.sleep(random.uniform(0, 0.3))
        bridge.kill()
        report.kills += 1
        await asyncio.to_thread(bridge.start)


def run_soak(options: SoakOptions, workdir: Path) -> SoakReport:
    """Run one soak in ``workdir`` and report."""
    report = SoakReport(options)
    started = time.monotonic()
    with start_crm(options.backend, workdir, dedupe=options.dedupe) as crm:
        crm.faults.rates.update(RATES)
        # Each kind once for sure, however few calls batching leaves to draw on.
        crm.faults.script.extend(RATES)
        crm.faults.stall_seconds = options.read_timeout + 0.5
        bridge = _bridge(options, crm, workdir)
        bridge.start()
        load = _Load(options, crm, bridge.url)

        async def drive() -> None:
            killer = asyncio.create_task(
                _kill_and_restart(load, bridge, options.kills, report)
            )
            await load.run(options.clients)
            await killer

        try:
            asyncio.run(drive())
        finally:
            bridge.stop()
        crm.faults.clear()
        report.faults = crm.faults.injected
        report.sends = load.total
        report.client_retries = load.retries
        report.unexpected = load.unexpected
        _check(report, load, crm, bridge.config.parent / "journal.sqlite3")
    report.log_leaks = _leaks(workdir / "bridge.log")
    report.wall_seconds = time.monotonic() - started
    return report


def _bridge(options: SoakOptions, crm: FakeCrm, workdir: Path) -> BridgeProcess:
    port = free_port()
    sections: dict[str, dict[str, Any]] = {
        "server": {"port": port, "access_log": False},
        "crm": {
            "backend": options.backend,
            "deadline_seconds": 5,
            "connect_timeout": 1,
            "read_timeout": options.read_timeout,
        },
        "outbox": {"poll_seconds": 0.2, "backoff_max_seconds": 2},
        **crm.sections,
    }
    config = write_config(workdir, sections)
    return BridgeProcess(config, port, crm.environ, workdir / "bridge.log")


def _check(report: SoakReport, load: _Load, crm: FakeCrm, journal: Path) -> None:
    held: dict[int, list[str]] = {}
    for crm_id, text in crm.written():
        found = _NUMBER.search(text)
        if found:
            held.setdefault(int(found[1]), []).append(crm_id)
    expected = range(report.options.activities)
    report.lost = sum(1 for n in expected if n not in held)
    report.duplicated = sum(len(held[n]) - 1 for n in held)
    report.wrong_ids = sum(
        1
        for n, ids in load.ids.items()
        if len(ids) != 1 or not ids <= set(held.get(n, []))
    )
    report.lost += sum(1 for n in expected if n not in load.ids)

    store = Store(journal)
    try:
        report.journal = {state: n for state, n in store.counts().items()}
        resends = [store.get(key_of(n)) for n in expected]
        report.in_doubt_resends = sum(e.in_doubt_resends for e in resends if e)
    finally:
        store.close()


def _leaks(log: Path) -> int:
    if not log.exists():
        return 0
    return sum(1 for line in log.read_text().splitlines() if CANARY in line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--backend", choices=["salesforce", "hubspot"], default="salesforce"
    )
    parser.add_argument("--activities", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument(
        "--no-dedupe",
        dest="dedupe",
        action="store_false",
        help="no external id field (Salesforce) / dedupe property (HubSpot)",
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    options = SoakOptions(
        backend=args.backend,
        activities=args.activities,
        clients=args.clients,
        kills=args.kills,
        dedupe=args.dedupe,
        seed=args.seed,
    )
    with tempfile.TemporaryDirectory(prefix="crm-bridge-soak-") as workdir:
        report = run_soak(options, Path(workdir))
    print(report.table())
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
