"""A real Prometheus on 127.0.0.1 for tests, the demo and the bench (Debian's ``prometheus``).

:class:`LocalPrometheus` starts ``prometheus`` on a free port with its own data directory and
config (optionally scraping ``targets`` every ``scrape_interval``), waits until ``/-/ready``
answers, and stops it on exit. :func:`load_history` writes OpenMetrics text into TSDB blocks
with ``promtool tsdb create-blocks-from openmetrics`` before the server starts; retention is
set to 100 years so that Prometheus never drops a block of old history.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import requests

from minutemeter.local.ddb import free_port

RETENTION = "100y"


def prometheus_missing() -> str | None:
    """Why a local Prometheus cannot run here (``None``: it can)."""
    missing = [tool for tool in ("prometheus", "promtool") if shutil.which(tool) is None]
    if missing:
        return (f"{' and '.join(missing)} not installed (Debian package prometheus; "
                "`make setup` installs it)")
    return None


def load_history(openmetrics: str, data_dir: Path) -> None:
    """Write ``openmetrics`` (ending with ``# EOF``) into TSDB blocks under ``data_dir``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    source = data_dir.parent / f"{data_dir.name}.om"
    source.write_text(openmetrics)
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(source),
                    str(data_dir)], check=True, capture_output=True, text=True)
    source.unlink()


class LocalPrometheus:
    """``prometheus`` on ``127.0.0.1:<port>`` over ``data_dir``."""

    def __init__(
        self,
        data_dir: Path,
        *,
        targets: Sequence[str] = (),
        scrape_interval: str = "1s",
        port: int | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.targets = list(targets)
        self.scrape_interval = scrape_interval
        self.port = port or free_port()
        self.log_path = log_path or data_dir.parent / f"{data_dir.name}-prometheus.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self, timeout_seconds: float = 60.0) -> LocalPrometheus:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir.parent / f"{self.data_dir.name}-prometheus.yml"
        config.write_text(self._config())
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                ["prometheus", f"--config.file={config}",
                 f"--storage.tsdb.path={self.data_dir}",
                 f"--storage.tsdb.retention.time={RETENTION}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        self._wait_ready(timeout_seconds)
        return self

    def _config(self) -> str:
        lines = ["global:", f"  scrape_interval: {self.scrape_interval}",
                 f"  scrape_timeout: {self.scrape_interval}"]
        if self.targets:
            lines += ["scrape_configs:", "  - job_name: node", "    static_configs:",
                      "      - targets: [" + ", ".join(f'"{t}"' for t in self.targets) + "]"]
        return "\n".join(lines) + "\n"

    def _wait_ready(self, timeout_seconds: float) -> None:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self._process.returncode}; see "
                                   f"{self.log_path}")
            try:
                if requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"prometheus not ready on port {self.port} in {timeout_seconds} s")

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def __enter__(self) -> LocalPrometheus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
