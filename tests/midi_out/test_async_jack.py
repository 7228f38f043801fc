"""Our JACK MIDI output on a synchronous and an asynchronous server, read by a C reader (``jack_midi_dump``), with a
GIL-bound thread beside the sender (testkit/jack_delivery_probe.py runs each case in a process with a server of its
own).

A synchronous server waits for our callback: nothing is lost or repeated, and no call is counted late (the at-risk
count has no false alarms). An asynchronous one does not wait: a late callback can lose or repeat messages — JACK's
semantics, not ours to prevent — and the output must account for every such message: lost + repeated ≤ at risk,
and stderr says so whenever anything was at risk. Neither assertion depends on how late the callbacks were.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


def probe(mode: str, messages: int) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "testkit.jack_delivery_probe", mode, str(messages)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert result.returncode == 0 and lines, f"probe failed ({result.returncode}): {result.stdout}\n{result.stderr}"
    report = json.loads(lines[-1])
    assert "error" not in report, report
    assert report["sent"] == messages
    return report


@pytest.mark.timeout(300)
def test_synchronous_server_loses_and_repeats_nothing_and_counts_no_late_call():
    report = probe("sync", 900)
    assert (report["lost"], report["duplicates"], report["received"]) == (0, 0, 900), report
    assert (report["at_risk"], report["late_cycles"], report["warned"]) == (0, 0, False), report


@pytest.mark.timeout(300)
def test_asynchronous_server_every_lost_or_repeated_message_was_counted_at_risk_and_reported():
    report = probe("async", 1800)
    assert report["lost"] + report["duplicates"] <= report["at_risk"], report
    assert report["warned"] == (report["at_risk"] > 0), report
    assert report["received"] == 1800 - report["lost"] + report["duplicates"], report
