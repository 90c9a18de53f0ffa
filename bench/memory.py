"""Peak memory (RSS) of a collector run and of a one-hour reconcile, next to the Lambda's memory.

Cases (each against its own tables in one DynamoDB Local, and its own sample exporter):

- ``collect_2000`` and ``collect_20000``: one collector run for that many accounts over one
  15-minute chunk of 15 s snapshots (60 snapshots; a new source, so the first is its baseline),
  every account's counter rising: the window the collector processes in one chunk.
- ``reconcile_5000_1h``: a one-hour dry-run reconcile for 5,000 accounts, after a collector run
  billed that hour (300,000 account-minutes; that setup run is measured too, and reported).

Each measured run is its own process (``bench.memory_child``): ``minutemeter collect ID`` or
``minutemeter reconcile ID --since --until --dry-run`` through ``bootstrap()``, the real clock and
the real adapters, as the CLI runs them. The exporter serves from this process and DynamoDB Local
is a java process, so neither is counted. The child reports its RSS after imports (the baseline),
after ``bootstrap()``, and its peak (``VmHWM``). MB here means MiB, as Lambda's ``MemorySize``.

Usage: ``python -m bench.memory`` (writes the ``memory`` section of bench/results.json) or
``python -m bench.run --only memory``; ``--quick`` runs a tenth of the accounts and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # no stubs in the dev tools

from bench.ledger_loader import LoaderLedger
from minutemeter.adapters.dynamo.base import DynamoTable
from minutemeter.adapters.dynamo.schema import create_tables
from minutemeter.adapters.dynamo.state import dynamo_state_stores
from minutemeter.adapters.dynamo.wire import CapacityMeter
from minutemeter.adapters.exporter_http import HttpExporter
from minutemeter.adapters.exporter_reader import ExporterReader
from minutemeter.adapters.system import SystemClock
from minutemeter.domain.model import JobStatus, SourceKind
from minutemeter.domain.timeutil import floor_minute, format_second
from minutemeter.local import exporter as sample_exporter
from minutemeter.local.ddb import ENV_DDB_LOCAL_DIR, LOCAL_CREDENTIALS, DynamoDBLocal, find_jar
from minutemeter.local.exporter import SampleExporter, SyntheticCounters, account_ids
from minutemeter.service.collect import collect_source
from minutemeter.service.deps import BillingDeps
from minutemeter.service.sources import SourceChanges, put_source
from minutemeter.settings import ENV_LEDGER_TABLE, ENV_STATE_TABLE, Settings

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "template.yaml"
RESULTS = Path(__file__).with_name("results.json")
SAM_DEFAULT_MEMORY_MB = 128  # what a function gets with no MemorySize, here or in Globals
SNAPSHOT_INTERVAL = timedelta(seconds=15)
LAG_SECONDS = 60
PAGE_SIZE = 4  # snapshots per exporter page: one minute (20,000 accounts: about 6.6 MB)
KIB_PER_MB = 1024
ENV_CODE_AT = "MINUTEMETER_BENCH_CODE_AT"  # set in the re-run that measures committed code


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # collect | reconcile
    accounts: int
    minutes: int
    function: str  # the template resource whose MemorySize bounds it

    @property
    def label(self) -> str:
        what = "collector run" if self.kind == "collect" else "reconcile (dry run)"
        return f"{what}, {self.accounts:,} accounts, {self.minutes} min"


CASES = (
    Case("collect_2000", "collect", 2_000, 15, "CollectorFunction"),
    Case("collect_20000", "collect", 20_000, 15, "CollectorFunction"),
    Case("reconcile_5000_1h", "reconcile", 5_000, 60, "ApiFunction"),
)


# -- the template -----------------------------------------------------------------------------
class _CloudFormationLoader(yaml.SafeLoader):  # type: ignore[misc]
    """A YAML loader that reads CloudFormation short-form tags (``!Ref``, ``!GetAtt``...) as
    plain values instead of failing on them."""


def _any_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)


_CloudFormationLoader.add_multi_constructor("!", _any_tag)


def lambda_memory_mb(template: Path = TEMPLATE) -> dict[str, int]:
    """``MemorySize`` (MB) of each ``AWS::Serverless::Function`` in ``template``: its own, else
    ``Globals.Function``'s, else SAM's default."""
    document = yaml.load(template.read_text(), Loader=_CloudFormationLoader)
    default = (document.get("Globals") or {}).get("Function", {}).get(
        "MemorySize", SAM_DEFAULT_MEMORY_MB
    )
    return {
        name: int(resource.get("Properties", {}).get("MemorySize", default))
        for name, resource in document["Resources"].items()
        if isinstance(resource, dict) and resource.get("Type") == "AWS::Serverless::Function"
    }


# -- one case ---------------------------------------------------------------------------------
def say(message: str) -> None:
    print(f"  memory: {message}", file=sys.stderr, flush=True)


@contextmanager
def tables(client: Any) -> Iterator[tuple[str, str]]:
    """Fresh ledger and state tables, dropped afterwards (DynamoDB Local keeps all in memory)."""
    suffix = uuid.uuid4().hex[:8]
    ledger, state = f"mem-ledger-{suffix}", f"mem-state-{suffix}"
    create_tables(client, ledger_table=ledger, state_table=state)
    try:
        yield ledger, state
    finally:
        for name in (ledger, state):
            client.delete_table(TableName=name)


def run_child(env: dict[str, str], command: list[str]) -> dict[str, Any]:
    """One measured process: the child's report plus the CLI's JSON document."""
    with tempfile.TemporaryDirectory(prefix="mm-bench-") as scratch:
        report_path = Path(scratch) / "report.json"
        finished = subprocess.run(
            [sys.executable, "-m", "bench.memory_child", str(report_path), *command],
            cwd=REPO, env=env, capture_output=True, text=True,
            check=False,
        )
        if not report_path.exists():
            sys.stderr.write(finished.stderr[-4000:])
            raise RuntimeError(f"measured process failed ({finished.returncode}): {command}")
        report: dict[str, Any] = json.loads(report_path.read_text())
    report["cli_output"] = json.loads(finished.stdout) if finished.stdout.strip() else None
    report["cli_log_lines"] = len(finished.stderr.splitlines())
    return report


def _summary(report: dict[str, Any], memory_mb: int) -> dict[str, Any]:
    peak = report["peak_rss_kib"] / KIB_PER_MB
    baseline = report["rss_after_imports_kib"] / KIB_PER_MB
    out = report["cli_output"] or {}
    summary: dict[str, Any] = {
        "peak_rss_mb": round(peak, 1),
        "baseline_rss_mb": round(baseline, 1),
        "rss_after_bootstrap_mb": round(report["rss_after_bootstrap_kib"] / KIB_PER_MB, 1),
        "growth_mb": round(peak - baseline, 1),
        "rss_end_mb": round(report["rss_end_kib"] / KIB_PER_MB, 1),
        "lambda_memory_mb": memory_mb,
        "peak_share_of_lambda_memory": round(peak / memory_mb, 3),
        "seconds": round(report["seconds"], 2),
        "exit_status": report["exit_status"],
        "status": out.get("status"),
    }
    for key in ("window_since", "window_until", "pages", "processed_samples",
                "written_minutes", "quarantined_samples", "difference_count", "chunks_done"):
        if key in out:
            summary[key] = out[key]
    return summary


def load_history(client: Any, ledger: str, state: str, source_id: str) -> dict[str, Any]:
    """Bill the source's whole due window into ``ledger`` (see bench/ledger_loader.py)."""
    meter = CapacityMeter()
    loader = LoaderLedger(DynamoTable(client, ledger, meter))
    stores = dynamo_state_stores(DynamoTable(client, state, meter))
    deps = BillingDeps.from_stores(
        Settings(ledger_table=ledger, state_table=state),
        SystemClock(),
        {SourceKind.EXPORTER: ExporterReader(HttpExporter(timeout_seconds=30, retries=0))},
        loader,
        stores,
    )
    started = time.perf_counter()
    job = collect_source(deps, source_id)
    if job.status is not JobStatus.OK:
        raise RuntimeError(f"loading the history failed: {job.error}")
    quotas = loader.write_quotas()
    return {"method": "collect_source with bench.ledger_loader.LoaderLedger",
            "seconds": round(time.perf_counter() - started, 1), "entries": loader.entries_written,
            "written_minutes": job.written_minutes, "quota_items": quotas,
            "window_since": job.window_since.isoformat() if job.window_since else None,
            "window_until": job.window_until.isoformat() if job.window_until else None}


def measure_case(
    ddb: DynamoDBLocal, case: Case, memory_mb: int, page_size: int
) -> dict[str, Any]:
    client: Any = ddb.client()
    now = datetime.now(UTC)
    # A start this far back that now - lag is past the window's end: the whole window is due.
    start = floor_minute(now) - timedelta(minutes=case.minutes + 2)
    until = start + timedelta(minutes=case.minutes)
    counters = SyntheticCounters(account_ids(case.accounts), start, interval=SNAPSHOT_INTERVAL,
                                 end=until)
    source_id = f"mem-{case.name.replace('_', '-')}"
    with tables(client) as (ledger, state), SampleExporter(
        counters, page_size=page_size
    ) as exporter:
        env = {**os.environ, **LOCAL_CREDENTIALS, "AWS_ENDPOINT_URL_DYNAMODB": ddb.endpoint,
               ENV_LEDGER_TABLE: ledger, ENV_STATE_TABLE: state}
        states = dynamo_state_stores(DynamoTable(client, state))
        put_source(states.sources, states.sync, source_id, SourceChanges(
            url=exporter.url, start=start, lag_seconds=LAG_SECONDS,
            max_window_seconds=case.minutes * 60,
        ), now)
        result: dict[str, Any] = {
            "label": case.label, "function": case.function, "accounts": case.accounts,
            "window_minutes": case.minutes,
            "snapshots": int(timedelta(minutes=case.minutes) / SNAPSHOT_INTERVAL),
        }
        if case.kind == "reconcile":
            say(f"{case.name}: billing {case.minutes} min for {case.accounts:,} accounts "
                "(collector with in-memory quota bookkeeping, bench/ledger_loader.py)")
            result["setup"] = load_history(client, ledger, state, source_id)
            say(f"{case.name}: billed {result['setup']['entries']:,} account-minutes in "
                f"{result['setup']['seconds']:.1f} s")
        else:
            say(f"{case.name}: collector run over {case.minutes} min, {case.accounts:,} accounts")
            collect = run_child(env, ["collect", source_id])
            if collect["exit_status"] != 0:
                raise RuntimeError(f"{case.name}: collect failed: {collect['cli_output']}")
            say(f"{case.name}: collect done in {collect['seconds']:.1f} s, "
                f"peak RSS {collect['peak_rss_kib'] / KIB_PER_MB:.0f} MB")
            return {**result, **_summary(collect, memory_mb)}
        say(f"{case.name}: dry-run reconcile of [{format_second(start)}, {format_second(until)})")
        report = run_child(env, ["reconcile", source_id, "--since", format_second(start),
                                  "--until", format_second(until), "--dry-run"])
        if report["exit_status"] not in (0, 5):  # 5: differences (there should be none)
            raise RuntimeError(f"{case.name}: reconcile failed: {report['cli_output']}")
        say(f"{case.name}: reconcile done in {report['seconds']:.1f} s, "
            f"peak RSS {report['peak_rss_kib'] / KIB_PER_MB:.0f} MB")
        return {**result, **_summary(report, memory_mb)}


def measure(cases: tuple[Case, ...] = CASES, *, scale: float = 1.0,
            page_size: int = PAGE_SIZE) -> dict[str, Any]:
    """Run ``cases`` (accounts times ``scale``); the ``memory`` section of results.json."""
    memory = lambda_memory_mb()
    started = time.perf_counter()
    out: dict[str, Any] = {
        "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "method": (
            "each run in its own process (bench.memory_child: the minutemeter CLI through "
            "bootstrap(), against DynamoDB Local); baseline = RSS after the CLI's imports, "
            "peak = VmHWM at the end; MB = MiB, as Lambda's MemorySize"
        ),
        "python": sys.version.split()[0],
        "exporter_page_snapshots": page_size,
        "lambda_memory_mb": {c.function: memory[c.function] for c in cases},
        "cases": {},
    }
    with DynamoDBLocal() as ddb:
        for case in cases:
            scaled = Case(case.name, case.kind, max(1, round(case.accounts * scale)),
                          case.minutes, case.function)
            result = measure_case(ddb, scaled, memory[case.function], page_size)
            result["code"] = os.environ.get(ENV_CODE_AT) or "working tree"
            result["measured_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            out["cases"][case.name] = result
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


# -- reporting --------------------------------------------------------------------------------
def print_table(memory: dict[str, Any]) -> None:
    print("\nmemory: peak RSS of one process (MB = MiB; baseline = after imports)")
    print(f"{'':42}{'baseline':>9}{'peak':>8}{'growth':>8}{'Lambda':>8}{'peak/L':>8}{'time':>9}")
    for case in memory["cases"].values():
        print(f"{case['label']:42}{case['baseline_rss_mb']:>9.0f}{case['peak_rss_mb']:>8.0f}"
              f"{case['growth_mb']:>8.0f}{case['lambda_memory_mb']:>8}"
              f"{case['peak_share_of_lambda_memory']:>7.0%} {case['seconds']:>7.1f} s")
        if "setup" in case:
            print(f"  (setup, not measured: {case['setup']['entries']:,} account-minutes billed "
                  f"in {case['setup']['seconds']:.0f} s)")


def write_results(memory: dict[str, Any], path: Path = RESULTS) -> None:
    """Replace the ``memory`` section of ``path``, keeping the other sections (and the cases
    this run did not measure)."""
    results = json.loads(path.read_text()) if path.exists() else {}
    previous = results.get("memory") or {}
    kept = {k: v for k, v in previous.get("cases", {}).items() if k not in memory["cases"]}
    results["memory"] = {**memory, "cases": {**kept, **memory["cases"]}}
    path.write_text(json.dumps(results, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.code_at and not os.environ.get(ENV_CODE_AT):
        return rerun_at(args.code_at, ["-m", "bench.memory", *(argv or sys.argv[1:])])
    run(args)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--case", action="append", choices=[c.name for c in CASES],
                        help="run only this case (repeatable; default: all)")
    parser.add_argument("--page-size", type=int, default=PAGE_SIZE,
                        help=f"snapshots per exporter page (default {PAGE_SIZE})")
    parser.add_argument("--quick", action="store_true",
                        help="a tenth of the accounts; prints, writes nothing")
    parser.add_argument("--code-at", metavar="REV",
                        help="measure the minutemeter package as committed at REV (git archive "
                             "into a temporary directory) instead of the working tree; the "
                             "sample exporter stays this tree's")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure, write the ``memory`` section (unless ``--quick``) and print the table."""
    cases = tuple(c for c in CASES if not args.case or c.name in args.case)
    memory = measure(cases, scale=0.1 if args.quick else 1.0, page_size=args.page_size)
    if not args.quick:
        write_results(memory)
    print_table(memory)
    if not args.quick:
        print(f"results written to {RESULTS}")
    return memory


def rerun_at(rev: str, python_args: list[str]) -> int:
    """Run ``python *python_args`` with the minutemeter package of commit ``rev`` first on the
    path (the working tree is left alone; the sample exporter is copied over from it)."""
    commit = subprocess.run(["git", "rev-parse", "--short", rev], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="mm-code-") as scratch:
        archive = subprocess.run(["git", "archive", commit, "layers/minutemeter"], cwd=REPO,
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", scratch], input=archive, check=True)
        package = Path(scratch) / "layers" / "minutemeter"
        shutil.copy(sample_exporter.__file__, package / "minutemeter" / "local" / "exporter.py")
        env = {**os.environ, "PYTHONPATH": str(package), ENV_CODE_AT: f"git {rev} ({commit})",
               ENV_DDB_LOCAL_DIR: str(find_jar().parents[2])}
        print(f"  memory: measuring minutemeter at {rev} ({commit}) from {package}",
              file=sys.stderr)
        return subprocess.run([sys.executable, *python_args], cwd=REPO, env=env,
                              check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
