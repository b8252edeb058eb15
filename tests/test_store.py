from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.errors import ConfigError
from bridge.journal import Journal
from bridge.models import Activity, ActivityRequest
from bridge.store import Store
from tests.conftest import example_activity

NOW = 1_000_000.0
DAY = 86_400.0


def activity(message_id: str = "m-1") -> Activity:
    body = example_activity(metadata={"messageId": message_id})
    request = ActivityRequest.model_validate(body)
    return request.normalise(datetime(2025, 1, 1, tzinfo=UTC))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "journal.sqlite3")


def test_claim_new_then_same_key_finds_the_row(store: Store) -> None:
    first = store.claim(activity(), NOW, DAY, 30)
    again = store.claim(activity(), NOW + 1, DAY, 30)

    assert (first.created, again.created) == (True, False)
    assert again.entry.state == "pending"
    assert again.entry.activity == activity()
    assert (again.entry.received_at, again.entry.next_attempt_at) == (NOW, NOW + 30)


def test_delivered_row_keeps_the_answer_and_drops_the_payload(store: Store) -> None:
    store.claim(activity(), NOW, DAY, 30)

    store.mark_sending([activity().key], NOW, 30, count_resends=False)
    store.record([(activity().key, "crm-1")], [], NOW + 1)

    entry = store.get(activity().key)
    assert entry is not None
    assert (entry.state, entry.crm_id, entry.activity, entry.attempts) == (
        "delivered",
        "crm-1",
        None,
        1,
    )
    assert entry.answer["subject"] == "[1/3] [FROM Acme Corp] John Smith"


def test_claim_revives_a_dead_row(store: Store) -> None:
    store.claim(activity(), NOW, DAY, 30)
    store.mark_dead(activity().key, "hubspot create 400 VALIDATION_ERROR", NOW)

    claim = store.claim(activity(), NOW + 100, DAY, 30)

    assert (claim.created, claim.revived, claim.entry.state) == (False, True, "pending")
    assert claim.entry.expires_at == NOW + 100 + DAY


def test_recover_marks_rows_cut_off_mid_call_in_doubt(store: Store) -> None:
    store.claim(activity("a"), NOW, DAY, 30)
    store.claim(activity("b"), NOW, DAY, 30)
    store.mark_sending([activity("a").key], NOW, 30, count_resends=True)

    in_doubt = store.recover(NOW + 5)

    due = store.due(NOW + 5, 10)
    assert in_doubt == 1
    assert sorted((e.key, e.in_doubt, e.state) for e in due) == [
        (activity("a").key, True, "pending"),
        (activity("b").key, False, "pending"),
    ]


def test_mark_sending_counts_resends_of_rows_in_doubt(store: Store) -> None:
    key = activity().key
    store.claim(activity(), NOW, DAY, 30)
    store.mark_sending([key], NOW, 30, count_resends=True)
    store.mark_failed(key, "hubspot create 502", NOW + 1, in_doubt=True, now=NOW)

    store.mark_sending([key], NOW + 2, 30, count_resends=True)

    entry = store.get(key)
    assert entry is not None
    assert (entry.attempts, entry.in_doubt, entry.in_doubt_resends) == (2, True, 1)
    assert store.summary()["in_doubt_resends"] == 1


def test_leased_rows_are_not_due(store: Store) -> None:
    store.claim(activity(), NOW, DAY, 30)

    assert store.due(NOW + 29, 10) == []
    assert len(store.due(NOW + 30, 10)) == 1


def test_expire_turns_old_pending_rows_into_dead_letters(store: Store) -> None:
    store.claim(activity(), NOW, DAY, 30)
    store.mark_failed(activity().key, "salesforce write 503", NOW + 60, False, NOW)

    expired = store.expire(NOW + DAY + 1)

    entry = store.get(activity().key)
    assert [e.key for e in expired] == [activity().key]
    assert entry is not None
    assert entry.state == "dead"
    assert entry.reason == "expired after 0 attempts; last: salesforce write 503"


def test_prune_forgets_only_finished_rows_past_retention(store: Store) -> None:
    store.claim(activity("old"), NOW, DAY, 30)
    store.record([(activity("old").key, "1")], [], NOW)
    store.claim(activity("new"), NOW, DAY, 30)
    store.record([(activity("new").key, "2")], [], NOW + 10 * DAY)
    store.claim(activity("waiting"), NOW, DAY, 30)

    pruned = store.prune(NOW + DAY)

    assert pruned == 1
    assert store.counts() == {"pending": 1, "sending": 0, "delivered": 1, "dead": 0}


def test_replay_dead_and_by_hash_prefix(store: Store) -> None:
    for name in ("a", "b"):
        store.claim(activity(name), NOW, DAY, 30)
        store.mark_dead(activity(name).key, "rejected", NOW)
    prefix = activity("a").key_hash[:10]

    one = store.replay(NOW + 1, DAY, dead=False, key=prefix)
    rest = store.replay(NOW + 2, DAY, dead=True, key=None)

    assert (one, rest) == (1, 2)
    assert store.counts()["dead"] == 0
    assert len(store.due(NOW + 2, 10)) == 2


def test_lock_exclusive_refuses_a_second_server(tmp_path: Path) -> None:
    first = Store(tmp_path / "j.sqlite3")
    first.lock_exclusive()

    with pytest.raises(ConfigError, match="another crm-bridge serve"):
        Store.ensure_unlocked(tmp_path / "j.sqlite3")
    first.close()
    Store.ensure_unlocked(tmp_path / "j.sqlite3")


def test_journal_groups_concurrent_operations_in_one_commit(tmp_path: Path) -> None:
    store = Store(tmp_path / "j.sqlite3")
    journal = Journal(store)
    commits: list[str] = []
    store._db.set_trace_callback(  # observe the statements the writer issues
        lambda sql: commits.append(sql) if sql == "COMMIT" else None
    )

    def claim(n: int) -> Callable[[Store], bool]:
        return lambda store: store.claim(activity(str(n)), NOW, DAY, 30).created

    async def claim_many() -> list[bool]:
        return list(await asyncio.gather(*(journal.run(claim(n)) for n in range(200))))

    created = asyncio.run(claim_many())
    journal.close()

    assert created == [True] * 200
    assert 1 <= len(commits) < 20


def test_journal_failing_operation_rolls_back_alone(tmp_path: Path) -> None:
    journal = Journal(Store(tmp_path / "j.sqlite3"))

    def broken(store: Store) -> None:
        store.claim(activity("x"), NOW, DAY, 30)
        raise sqlite3.IntegrityError("boom")

    async def run() -> tuple[BaseException | None, bool | BaseException]:
        return await asyncio.gather(
            journal.run(broken),
            journal.run(lambda s: s.claim(activity("y"), NOW, DAY, 30).created),
            return_exceptions=True,
        )

    failed, created = asyncio.run(run())
    counts = asyncio.run(journal.run(lambda s: s.counts()))
    journal.close()

    assert isinstance(failed, sqlite3.IntegrityError)
    assert created is True
    assert counts["pending"] == 1
