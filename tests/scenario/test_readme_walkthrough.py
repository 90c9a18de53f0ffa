"""The README is executable: its by-hand walkthrough (every ```sh walkthrough block, in order)
runs verbatim in bash, in a clean environment holding only what the README asks for, and must
bill something real. It fails when the README and the program disagree.

GIVEN a checkout where `make setup` has run (the walkthrough's first command; CI runs it anyway)
WHEN the walkthrough's blocks run as one bash script (set -euo pipefail)
THEN it exits 0, the ledger export shows entries of node-a and status shows the source.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^```sh walkthrough\n(.*?)^```$", re.MULTILINE | re.DOTALL)
PORTS = (8000, 9000)  # the README's DynamoDB Local and sample exporter


def walkthrough() -> list[str]:
    return BLOCK.findall((REPO / "README.md").read_text())


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _clean_environment() -> dict[str, str]:
    """PATH to the README's prerequisites (python3, make, node/npm, java) and a HOME: nothing
    of AWS, nothing of this test run."""
    tools = {"python3", "make", "npm", "java", "bash", "date", "tail"}
    path = os.pathsep.join(dict.fromkeys(
        str(Path(found).parent) for tool in tools if (found := shutil.which(tool))))
    return {"PATH": path, "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8"}


def _documents(text: str) -> list[dict[str, object]]:
    """Every JSON object printed on stdout (pretty-printed or one a line), in order."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while (at := text.find("{", at)) != -1:
        try:
            value, end = decoder.raw_decode(text, at)
        except ValueError:
            at += 1
            continue
        if isinstance(value, dict):
            found.append(value)
        at = end
    return found


def test_the_readme_has_a_walkthrough() -> None:
    blocks = walkthrough()
    assert len(blocks) == 2
    assert "minutemeter collect node-a" in blocks[0]


@pytest.mark.slow
def test_the_readme_walkthrough_runs_verbatim(tmp_path: Path) -> None:
    busy = [port for port in PORTS if not _port_free(port)]
    assert not busy, f"the walkthrough needs 127.0.0.1 ports {busy} free"
    script = tmp_path / "walkthrough.sh"
    script.write_text(
        "set -euo pipefail\n"
        # if a step fails, stop what the walkthrough started, as its last block would
        "trap 'kill %1 2>/dev/null; .venv/bin/python -m minutemeter.local.ddb stop --port 8000"
        " 2>/dev/null || true' ERR\n"
        + "\n".join(walkthrough())
    )
    done = subprocess.run(["bash", str(script)], cwd=REPO, env=_clean_environment(),
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    # the sample exporter's line, the collect job, two ledger entries, the status table
    documents = _documents(out)
    exporter = next(d for d in documents if "accounts" in d)
    job = next(d for d in documents if "job_id" in d)
    written = job["written_minutes"]
    assert job["status"] == "ok" and isinstance(written, int) and written > 0, job
    entries = [d for d in documents if "ledger_id" in d]
    assert len(entries) == 2
    accounts = exporter["accounts"]
    assert isinstance(accounts, list), exporter
    assert all(e["source_id"] == "node-a" and e["account_id"] in accounts for e in entries)
    assert re.search(r"^node-a\s+\d{4}-\d\d-\d\dT", out, re.MULTILINE)
    # the last block stopped both servers (they take a moment to let go of their ports)
    deadline = time.monotonic() + 20
    while not all(_port_free(port) for port in PORTS) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert all(_port_free(port) for port in PORTS)
