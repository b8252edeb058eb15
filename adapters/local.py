"""The embedded CRM: activities kept in a SQLite file of the bridge's own.

It lets ``crm-bridge serve`` run with no CRM account, so the whole contract can be
tried end to end. Writes are keyed on the idempotency key's hash, so a resend
after a crash finds the row it wrote before instead of adding another.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from adapters.base import Adapter, Sent
from bridge.errors import CrmError, CrmUnavailable
from bridge.models import Activity, format_time

_SCHEMA = """
CREATE TABLE IF NOT EXISTS local_activities (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key_hash TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    direction TEXT,
    subject TEXT,
    body TEXT,
    owner_id TEXT,
    contact_id TEXT,
    company_id TEXT,
    occurred_at TEXT NOT NULL,
    created_at REAL NOT NULL
)
"""


class LocalAdapter(Adapter):
    """Stores activities in ``[local] path``; ids look like ``local-42``."""

    name = "local"
    idempotent = True
    batch_size = 500

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA busy_timeout = 5000")
        self._db.execute(_SCHEMA)

    def send(self, lane: str, activities: Sequence[Activity]) -> Sent:
        """Insert the activities that are new; answer every one's id."""
        rows = [_row(activity) for activity in activities]
        try:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    "INSERT OR IGNORE INTO local_activities (key_hash, type, "
                    "direction, subject, body, owner_id, contact_id, company_id, "
                    "occurred_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                ids = self._ids([activity.key_hash for activity in activities])
                self._db.execute("COMMIT")
        except sqlite3.Error as error:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise _translate(error) from None
        results: list[str | CrmError] = [ids[a.key_hash] for a in activities]
        return Sent(results)

    def _ids(self, key_hashes: list[str]) -> dict[str, str]:
        found = self._db.execute(
            "SELECT key_hash, id FROM local_activities "
            "WHERE key_hash IN (SELECT value FROM json_each(?))",
            (json.dumps(key_hashes),),
        )
        return {key_hash: f"local-{row_id}" for key_hash, row_id in found}

    def count(self) -> int:
        """How many activities the embedded CRM holds."""
        with self._lock:
            (total,) = self._db.execute(
                "SELECT COUNT(*) FROM local_activities"
            ).fetchone()
        return int(total)

    def probe(self) -> None:
        """The file is readable."""
        self.count()

    def close(self) -> None:
        self._db.close()


def _row(activity: Activity) -> tuple[object, ...]:
    return (
        activity.key_hash,
        activity.type.value,
        activity.direction.value if activity.direction else None,
        activity.subject,
        activity.body,
        activity.owner_id,
        activity.contact_id,
        activity.company_id,
        format_time(activity.occurred_at),
        time.time(),
    )


def _translate(error: sqlite3.Error) -> CrmError:
    """A locked or full database passes; the outbox keeps the activity meanwhile."""
    return CrmUnavailable(
        "The local store could not be written.",
        backend="local",
        operation="insert",
        code=type(error).__name__,
    )
