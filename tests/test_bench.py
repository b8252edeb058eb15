"""The benchmark runs end to end and prints every figure it promises.

Its speeds are not judged here (that is what running it is for); a small load
checks that each run completes, with no client errors and every accepted
activity drained into the CRM.
"""

from __future__ import annotations

import re

import pytest

from bench import throughput

RUNS = ("hubspot-fail", "salesforce-fail", "hubspot-accept", "salesforce-accept")


def test_benchmark_prints_the_whole_table(capsys: pytest.CaptureFixture[str]) -> None:
    arguments = ["--activities", "150", "--clients", "15", "--overhead-count", "5"]
    arguments += ["--hubspot-requests-per-10s", "150", "--salesforce-latency-ms", "100"]
    arguments += ["--salesforce-max-concurrency", "20", "--overhead-latency-ms", "10"]
    assert throughput.main(arguments) == 0
    printed = capsys.readouterr().out

    assert "fake HubSpot with 10 ms latency" in printed
    assert "fake HubSpot 150 requests / 10 s, 100 ms" in printed
    assert "fake Salesforce at most 20 at once, 100 ms" in printed
    assert re.search(r"overhead \d+\.\d\d ms median, ratio \d\.\d{3}", printed)
    assert re.search(r"bridge CPU \d+\.\d\d ms per activity", printed)
    rows = {
        line.split()[0]: line.split()[1:]
        for line in printed.splitlines()
        if line.strip().startswith(RUNS)
    }
    assert set(rows) == set(RUNS)
    # Columns: act/s, two bounds, 429s, errors, p50, p99, drained/s, RSS.
    for name, row in rows.items():
        assert float(row[0]) > 0, name
        assert int(row[4]) == 0, name
        assert (row[7] != "-") == name.endswith("accept"), name
        assert float(row[8]) > 0, name
    # Bounds: requests per second times the batch size, and clients / latency.
    assert rows["hubspot-fail"][1:3] == ["1500", "150"]
    assert rows["salesforce-fail"][1:3] == ["40000", "150"]
