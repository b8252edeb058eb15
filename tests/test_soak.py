"""A short chaos soak: faults in the CRM, SIGKILLs of the bridge, nothing lost."""

from __future__ import annotations

from pathlib import Path

from bench.soak import SoakOptions, run_soak


def test_salesforce_soak_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    options = SoakOptions(backend="salesforce", activities=200, clients=20, kills=3)

    report = run_soak(options, tmp_path)

    assert report.passed, report.table()
    assert (report.lost, report.duplicated, report.kills) == (0, 0, 3)
    assert set(report.faults) == {"throttle", "error", "drop", "lost", "stall"}
    assert report.journal["delivered"] == 200


def test_hubspot_soak_without_dedupe_counts_every_duplicate(tmp_path: Path) -> None:
    options = SoakOptions(
        backend="hubspot", activities=150, clients=20, kills=3, dedupe=False
    )

    report = run_soak(options, tmp_path)

    assert report.passed, report.table()
    assert report.lost == 0
    assert report.duplicated <= report.in_doubt_resends


def test_hubspot_soak_with_dedupe_property_duplicates_nothing(tmp_path: Path) -> None:
    options = SoakOptions(backend="hubspot", activities=150, clients=20, kills=3)

    report = run_soak(options, tmp_path)

    assert report.passed, report.table()
    assert (report.lost, report.duplicated, report.wrong_ids) == (0, 0, 0)
