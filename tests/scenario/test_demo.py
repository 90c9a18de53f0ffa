"""`make demo` keeps working: the demo is a product surface, run it as a new user would."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_the_demo_bills_what_the_counters_say_and_reconciles() -> None:
    result = subprocess.run([sys.executable, "-m", "minutemeter.local.demo"],
                            capture_output=True, text=True, timeout=300)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr[-3000:]
    assert "every minute equals the exporter's counter increases: yes" in out
    assert "drift check" in out and ": exit 0, ok," in out
    assert "reconcile --dry-run again: exit 0, 0 differences" in out
    assert "1 correcting entry written" in out
    assert "healthy" in out  # the status table
    # AND it ends with the statements, the audit and delivery to the local Stripe (issue 11)
    assert "statement = sum of entries = quota used: yes" in out
    assert "sink deliver stripe-demo (again): exit 0, delivered 0," in out
    assert "every entry sent once: yes" in out
