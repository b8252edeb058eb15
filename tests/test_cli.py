"""The operator's commands: check, status, replay, and serve's start-up refusals."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import tomli_w

from bridge import cli
from bridge.models import ActivityRequest
from bridge.store import Store
from tests.conftest import API_KEY, HUBSPOT_TOKEN, example_activity
from tests.fakes.hubspot import FakeHubSpot
from tests.fakes.server import Faults

NOW = 1_000_000.0
REJECTED = "hubspot create 400 INVALID_OWNER_ID"


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CRM_BRIDGE_API_KEYS", API_KEY)
    path = tmp_path / "bridge.toml"
    path.write_text(tomli_w.dumps({"store": {"path": "journal.sqlite3"}}))
    return path


def fill_journal(path: Path) -> None:
    store = Store(path)
    with store.transaction():
        for n, state in enumerate(["pending", "dead", "dead", "delivered"]):
            body = example_activity(metadata={"messageId": f"m-{n}"})
            activity = ActivityRequest.model_validate(body).normalise(
                datetime(2025, 1, 1, tzinfo=UTC)
            )
            store.claim(activity, NOW, 86_400, 30)
            if state == "dead":
                store.mark_dead(activity.key, REJECTED, NOW)
            if state == "delivered":
                store.record([(activity.key, "crm-9")], [], NOW)
    store.close()


def test_status_reports_counts_age_and_dead_letters(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fill_journal(config_file.parent / "journal.sqlite3")

    status = cli.main(["status", "--config", str(config_file), "--json"])

    report = json.loads(capsys.readouterr().out)
    assert status == 0
    assert report["counts"] == {"pending": 1, "sending": 0, "delivered": 1, "dead": 2}
    assert report["oldest_pending_seconds"] > 0
    assert [d["reason"] for d in report["recent_dead_letters"]] == [REJECTED] * 2


def test_replay_dead_makes_them_pending_again(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = config_file.parent / "journal.sqlite3"
    fill_journal(journal)

    status = cli.main(["replay", "--config", str(config_file), "--dead"])

    store = Store(journal)
    counts = store.counts()
    store.close()
    assert status == 0
    assert capsys.readouterr().out == "3 activities due now\n"
    assert counts == {"pending": 3, "sending": 0, "delivered": 1, "dead": 0}


def test_replay_unknown_key_exits_1(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fill_journal(config_file.parent / "journal.sqlite3")

    status = cli.main(["replay", "--config", str(config_file), "--key", "feedface00"])

    assert status == 1
    assert capsys.readouterr().out == "0 activities due now\n"


def test_check_reports_a_refused_token_in_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    hubspot: tuple[FakeHubSpot, Faults, str],
) -> None:
    fake, _, url = hubspot
    monkeypatch.setenv("CRM_BRIDGE_API_KEYS", API_KEY)
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", HUBSPOT_TOKEN)
    path = tmp_path / "bridge.toml"
    path.write_text(
        tomli_w.dumps({"crm": {"backend": "hubspot"}, "hubspot": {"base_url": url}})
    )
    fake.tokens.clear()

    status = cli.main(["check", "--config", str(path)])

    assert status == 1
    assert capsys.readouterr().err == (
        "crm-bridge: hubspot check failed: hubspot read 401 INVALID_AUTHENTICATION\n"
    )


def test_check_local_backend_passes(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = cli.main(["check", "--config", str(config_file)])

    assert status == 0
    assert capsys.readouterr().out.startswith("ok: backend=local store=")


def test_serve_refuses_a_store_another_serve_holds(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    holder = Store(config_file.parent / "journal.sqlite3")
    holder.lock_exclusive()

    status = cli.main(["serve", "--config", str(config_file)])

    holder.close()
    assert status == 2
    assert "another crm-bridge serve is using it" in capsys.readouterr().err
