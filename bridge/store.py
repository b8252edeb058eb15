"""The journal's rows and their SQL: one SQLite file, one connection.

Every accepted activity is a row, committed before any CRM call. A row moves::

    pending ──► sending ──► delivered
       ▲           │
       └───────────┘ (failed: back to pending with a later next_attempt_at)
    pending / sending ──► dead (rejected by the CRM, or older than [outbox] max_age)
    dead ──► pending (Enginy sends the key again, or ``crm-bridge replay``)

A row found in ``sending`` after a restart was cut off mid-call: it returns to
``pending`` marked ``in_doubt``, since the CRM may have written it.

``next_attempt_at`` doubles as a lease: while a delivery is running in memory it
lies ahead, so the outbox worker does not pick the row up again.

``Store`` is not thread-safe: ``bridge.journal.Journal`` serialises its use.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from bridge.errors import ConfigError
from bridge.models import Activity

State = Literal["pending", "sending", "delivered", "dead"]
STATES: tuple[State, ...] = ("pending", "sending", "delivered", "dead")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS activities (
    key TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL,
    state TEXT NOT NULL,
    payload TEXT,
    answer TEXT NOT NULL,
    crm_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    in_doubt INTEGER NOT NULL DEFAULT 0,
    in_doubt_resends INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    received_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    updated_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS activities_due
    ON activities (next_attempt_at) WHERE state IN ('pending', 'sending');
CREATE INDEX IF NOT EXISTS activities_finished
    ON activities (updated_at) WHERE state IN ('delivered', 'dead');
CREATE INDEX IF NOT EXISTS activities_hash ON activities (key_hash);
"""


@dataclass(frozen=True)
class Entry:
    """One journal row."""

    key: str
    key_hash: str
    state: State
    activity: Activity | None
    answer: dict[str, Any]
    crm_id: str | None
    attempts: int
    in_doubt: bool
    in_doubt_resends: int
    reason: str | None
    received_at: float
    expires_at: float
    next_attempt_at: float
    updated_at: float

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Entry:
        payload = row["payload"]
        return cls(
            key=row["key"],
            key_hash=row["key_hash"],
            state=row["state"],
            activity=Activity.from_json(payload) if payload else None,
            answer=json.loads(row["answer"]),
            crm_id=row["crm_id"],
            attempts=row["attempts"],
            in_doubt=bool(row["in_doubt"]),
            in_doubt_resends=row["in_doubt_resends"],
            reason=row["reason"],
            received_at=row["received_at"],
            expires_at=row["expires_at"],
            next_attempt_at=row["next_attempt_at"],
            updated_at=row["updated_at"],
        )


@dataclass(frozen=True)
class Claim:
    """What ``Store.claim`` found: the row, and whether this call created it."""

    entry: Entry
    created: bool
    revived: bool = False


class Store:
    """The journal's SQL, on one connection. Not thread-safe: one thread uses it."""

    def __init__(self, path: Path, synchronous: str = "normal") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock_file: IO[bytes] | None = None
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        # WAL keeps readers (the CLI) off the writer's back; with synchronous
        # NORMAL a commit survives a killed process, FULL also a power cut.
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        self._db.execute("PRAGMA busy_timeout = 5000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()
        if self._lock_file is not None:
            self._lock_file.close()

    def lock_exclusive(self) -> None:
        """Make sure no other ``serve`` delivers from this journal."""
        self._lock_file = _lock(self.path)

    @staticmethod
    def ensure_unlocked(path: Path) -> None:
        """Fail early, with a clear message, when another ``serve`` holds ``path``."""
        if path.parent.is_dir():
            _lock(path).close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        self._db.execute("SAVEPOINT op")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK TO op")
            self._db.execute("RELEASE op")
            raise
        self._db.execute("RELEASE op")

    def get(self, key: str) -> Entry | None:
        row = self._db.execute(
            "SELECT * FROM activities WHERE key = ?", (key,)
        ).fetchone()
        return Entry.from_row(row) if row else None

    def find(self, key_or_hash: str) -> list[Entry]:
        """Rows by whole key, or by a prefix (8+ hex digits) of the key's hash."""
        prefix = key_or_hash.lower() if len(key_or_hash) >= 8 else None
        rows = self._db.execute(
            "SELECT * FROM activities WHERE key = ? "
            "OR (? IS NOT NULL AND key_hash LIKE ? || '%')",
            (key_or_hash, prefix, prefix),
        ).fetchall()
        return [Entry.from_row(row) for row in rows]

    def claim(
        self,
        activity: Activity,
        now: float,
        max_age: float,
        lease: float,
        sending: bool = False,
    ) -> Claim:
        """Record a new activity, or find the row its key already has.

        With ``sending``, a new row starts as ``sending``: its first call is
        about to leave, and this write stands for that call's own mark (a crash
        before the call then only makes it needlessly in doubt). A dead row is
        revived: Enginy sending a key again is a request to try it once more.
        """
        answer = activity.answer("")
        row = {
            "key": activity.key,
            "key_hash": activity.key_hash,
            "state": "sending" if sending else "pending",
            "attempts": int(sending),
            "payload": activity.to_json(),
            "answer": json.dumps(answer, separators=(",", ":")),
            "received_at": now,
            "expires_at": now + max_age,
            "next_attempt_at": now + lease,
        }
        inserted = self._db.execute(
            "INSERT OR IGNORE INTO activities (key, key_hash, state, attempts, "
            "payload, answer, received_at, expires_at, next_attempt_at, updated_at) "
            "VALUES (:key, :key_hash, :state, :attempts, :payload, :answer, "
            ":received_at, :expires_at, :next_attempt_at, :received_at)",
            row,
        ).rowcount
        if inserted:
            return Claim(_new_entry(activity, answer, row), created=True)
        entry = self.get(activity.key)
        assert entry is not None
        if entry.state != "dead":
            return Claim(entry, created=False)

        self._db.execute(
            "UPDATE activities SET state = 'pending', expires_at = ?, "
            "next_attempt_at = ?, updated_at = ? WHERE key = ?",
            (now + max_age, now + lease, now, activity.key),
        )
        revived = self.get(activity.key)
        assert revived is not None
        return Claim(revived, created=False, revived=True)

    def mark_sending(
        self, keys: Sequence[str], now: float, lease: float, count_resends: bool
    ) -> None:
        """The CRM call for ``keys`` is about to leave; extend their lease.

        With ``count_resends`` (a CRM without idempotent writes), a row already
        in doubt counts one more in-doubt resend.
        """
        self._db.executemany(
            "UPDATE activities SET state = 'sending', attempts = attempts + 1, "
            "in_doubt_resends = in_doubt_resends + (in_doubt AND ?), "
            "next_attempt_at = ?, updated_at = ? "
            "WHERE key = ? AND state IN ('pending', 'sending')",
            [(count_resends, now + lease, now, key) for key in keys],
        )

    def record(
        self, delivered: Sequence[tuple[str, str]], in_doubt: Sequence[str], now: float
    ) -> None:
        """After a call: CRM ids of the delivered (their payload goes, only the
        answer is kept), and the keys whose outcome is unknown."""
        self._db.executemany(
            "UPDATE activities SET state = 'delivered', crm_id = ?, payload = NULL, "
            "in_doubt = 0, reason = NULL, updated_at = ? WHERE key = ?",
            [(crm_id, now, key) for key, crm_id in delivered],
        )
        self._db.executemany(
            "UPDATE activities SET in_doubt = 1, updated_at = ? WHERE key = ?",
            [(now, key) for key in in_doubt],
        )

    def mark_failed(
        self, key: str, reason: str, next_attempt_at: float, in_doubt: bool, now: float
    ) -> None:
        """Back to pending, to be tried again at ``next_attempt_at``."""
        self._db.execute(
            "UPDATE activities SET state = 'pending', reason = ?, "
            "next_attempt_at = ?, in_doubt = MAX(in_doubt, ?), updated_at = ? "
            "WHERE key = ? AND state IN ('pending', 'sending')",
            (reason, next_attempt_at, in_doubt, now, key),
        )

    def mark_dead(self, key: str, reason: str, now: float) -> None:
        self._db.execute(
            "UPDATE activities SET state = 'dead', reason = ?, updated_at = ? "
            "WHERE key = ? AND state IN ('pending', 'sending')",
            (reason, now, key),
        )

    def recover(self, now: float) -> int:
        """After a restart: rows cut off mid-call are in doubt; all are due now."""
        in_doubt = self._db.execute(
            "UPDATE activities SET state = 'pending', in_doubt = 1, "
            "next_attempt_at = ?, updated_at = ? WHERE state = 'sending'",
            (now, now),
        ).rowcount
        self._db.execute(
            "UPDATE activities SET next_attempt_at = ? "
            "WHERE state = 'pending' AND next_attempt_at > ?",
            (now, now),
        )
        return in_doubt

    def due(self, now: float, limit: int) -> list[Entry]:
        rows = self._db.execute(
            "SELECT * FROM activities WHERE state IN ('pending', 'sending') "
            "AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
            (now, limit),
        ).fetchall()
        return [Entry.from_row(row) for row in rows]

    def expire(self, now: float) -> list[Entry]:
        """Pending rows past their age become dead letters; return them."""
        rows = self._db.execute(
            "SELECT * FROM activities WHERE state = 'pending' AND expires_at < ?",
            (now,),
        ).fetchall()
        self._db.execute(
            "UPDATE activities SET state = 'dead', updated_at = ?, "
            "reason = 'expired after ' || attempts || ' attempts; last: ' "
            "|| COALESCE(reason, 'none') WHERE state = 'pending' AND expires_at < ?",
            (now, now),
        )
        return [Entry.from_row(row) for row in rows]

    def prune(self, before: float) -> int:
        """Forget delivered and dead rows last touched before ``before``."""
        return self._db.execute(
            "DELETE FROM activities WHERE state IN ('delivered', 'dead') "
            "AND updated_at < ?",
            (before,),
        ).rowcount

    def replay(self, now: float, max_age: float, *, dead: bool, key: str | None) -> int:
        """Make rows due now: pending ones, dead ones too with ``dead``, or one key."""
        update = (
            "UPDATE activities SET state = 'pending', next_attempt_at = ?, "
            "expires_at = MAX(expires_at, ?), updated_at = ? "
        )
        times = (now, now + max_age, now)
        if key is not None:
            keys = [entry.key for entry in self.find(key) if entry.state != "delivered"]
            self._db.executemany(update + "WHERE key = ?", [(*times, k) for k in keys])
            return len(keys)
        states = ("pending", "sending", "dead") if dead else ("pending", "sending")
        placeholders = ", ".join("?" for _ in states)
        return self._db.execute(
            update + f"WHERE state IN ({placeholders})", (*times, *states)
        ).rowcount

    def counts(self) -> dict[State, int]:
        counts: dict[State, int] = dict.fromkeys(STATES, 0)
        for state, count in self._db.execute(
            "SELECT state, COUNT(*) FROM activities GROUP BY state"
        ):
            counts[state] = count
        return counts

    def summary(self) -> dict[str, float | int | None]:
        """Oldest pending receipt time and the totals an operator watches."""
        row = self._db.execute(
            "SELECT MIN(CASE WHEN state IN ('pending', 'sending') "
            "THEN received_at END), SUM(in_doubt_resends), SUM(in_doubt) "
            "FROM activities"
        ).fetchone()
        return {
            "oldest_pending": row[0],
            "in_doubt_resends": row[1] or 0,
            "in_doubt": row[2] or 0,
        }

    def dead_letters(self, limit: int) -> list[Entry]:
        rows = self._db.execute(
            "SELECT * FROM activities WHERE state = 'dead' "
            "ORDER BY updated_at DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [Entry.from_row(row) for row in rows]


def _new_entry(
    activity: Activity, answer: dict[str, Any], row: dict[str, Any]
) -> Entry:
    return Entry(
        key=activity.key,
        key_hash=activity.key_hash,
        state=row["state"],
        activity=activity,
        answer=answer,
        crm_id=None,
        attempts=row["attempts"],
        in_doubt=False,
        in_doubt_resends=0,
        reason=None,
        received_at=row["received_at"],
        expires_at=row["expires_at"],
        next_attempt_at=row["next_attempt_at"],
        updated_at=row["received_at"],
    )


def _lock(path: Path) -> IO[bytes]:
    lock_file = path.with_name(path.name + ".lock").open("wb")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.close()
        raise ConfigError(f"{path}: another crm-bridge serve is using it") from None
    return lock_file
