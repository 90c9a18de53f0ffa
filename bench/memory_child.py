"""The measured process of ``bench.memory``: one CLI command, then its peak RSS.

Run by ``bench.memory`` (not by hand)::

    python -m bench.memory_child REPORT.json collect SOURCE_ID
    python -m bench.memory_child REPORT.json reconcile SOURCE_ID --since T --until T --dry-run

It imports what the ``minutemeter`` CLI imports, notes the RSS (the baseline), wires the app with
``bootstrap()`` from the environment (``AWS_ENDPOINT_URL_DYNAMODB``, ``MINUTEMETER_*_TABLE``)
exactly as ``minutemeter collect ID`` does, runs the command, and writes a JSON report with the
baseline, the peak (``VmHWM``, the kernel's high-water mark of resident memory) and the wall time.
The CLI's own JSON goes to stdout and its logs to stderr, as usual. Only the standard library and
the CLI's own imports are loaded before the baseline, so the numbers belong to the CLI alone.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path


def _status_kib(field: str) -> int:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status (Linux only)")


def main(argv: list[str]) -> int:
    report_path, command = Path(argv[0]), argv[1:]
    interpreter_kib = _status_kib("VmRSS")
    from minutemeter import cli
    from minutemeter.bootstrap import bootstrap

    imported_kib = _status_kib("VmRSS")
    app = bootstrap()
    wired_kib = _status_kib("VmRSS")
    started = time.perf_counter()
    exit_status = cli.main(command, app=app)
    seconds = time.perf_counter() - started
    report = {
        "command": command,
        "exit_status": exit_status,
        "seconds": seconds,
        "rss_interpreter_kib": interpreter_kib,
        "rss_after_imports_kib": imported_kib,
        "rss_after_bootstrap_kib": wired_kib,
        "rss_end_kib": _status_kib("VmRSS"),
        "peak_rss_kib": _status_kib("VmHWM"),
        "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,  # KiB on Linux
    }
    report_path.write_text(json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
