"""``minutemeter sources put --kind prometheus`` (shared/spec/operator-cli.md), in-process on
moto: the options as the contract writes them, the kind's defaults, shown by ``sources list``
and ``status``, and bad arguments refused with exit 2 and one line."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from minutemeter.adapters.dynamo.schema import create_tables
from minutemeter.bootstrap import bootstrap
from minutemeter.domain.model import ResetPolicy, SourceAuth, SourceConfig, SourceKind
from minutemeter.settings import Settings
from tests.support.cli import InProcessCli
from tests.support.clock import FakeClock

NOW = datetime(2026, 11, 22, 10, 40, 15, tzinfo=UTC)
SELECTOR = 'minio_bucket_traffic_received_bytes{job="minio", server=~"node-1.*"}'
PUT = ["sources", "put", "p1", "--kind", "prometheus", "--url", "http://127.0.0.1:9090",
       "--selector", SELECTOR, "--account-label", "bucket"]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Iterator[InProcessCli]:
    with mock_aws():
        settings = Settings(ledger_table="p-ledger", state_table="p-state")
        app = bootstrap(settings, clock=FakeClock(NOW),
                        session=boto3.session.Session(region_name="us-east-1"))
        create_tables(app.dynamodb, ledger_table=settings.ledger_table,
                      state_table=settings.state_table)
        yield InProcessCli(app, capsys)


def test_a_prometheus_source_with_the_contracts_options(cli: InProcessCli) -> None:
    document = cli.json(*PUT, "--node-label", "server", "--auth", "sigv4",
                        "--start", "2026-11-22T10:00:00Z", "--lag", "90", "--max-window",
                        "1800", "--reset-policy", "skip", "--lease-seconds", "30")
    assert {k: document[k] for k in ("kind", "selector", "account_label", "node_label", "auth",
                                      "node_id", "lag_seconds", "reset_policy")} == {
        "kind": "prometheus", "selector": SELECTOR, "account_label": "bucket",
        "node_label": "server", "auth": "sigv4", "node_id": None, "lag_seconds": 90,
        "reset_policy": "skip"}
    assert cli.app.state.sources.get_source("p1") == SourceConfig(
        source_id="p1", url="http://127.0.0.1:9090", start=NOW.replace(minute=0, second=0),
        lag_seconds=90, max_window_seconds=1800, reset_policy=ResetPolicy.SKIP,
        lease_seconds=30, kind=SourceKind.PROMETHEUS, selector=SELECTOR,
        account_label="bucket", node_label="server", auth=SourceAuth.SIGV4)
    # shown by `sources list` and `status`, the options as stored
    for shown in (cli.json("sources", "list")[0], cli.json("status", "p1")):
        assert (shown["selector"], shown["node_label"], shown["auth"]) == (
            SELECTOR, "server", "sigv4")


def test_the_kinds_defaults_and_a_token_means_bearer(cli: InProcessCli) -> None:
    document = cli.json(*PUT, "--node-id", "node-1", "--token-secret", "ssm:/prom/token")
    assert (document["lag_seconds"], document["reset_policy"], document["auth"]) == (
        120, "from-zero", "bearer")
    assert document["start"] == "2026-11-22T10:41:00Z" and document["node_id"] == "node-1"
    # an update keeps what it does not name
    again = cli.json("sources", "put", "p1", "--lag", "180")
    assert again == {**document, "lag_seconds": 180}


def test_an_exporter_source_is_still_the_default_and_shows_no_prometheus_options(
    cli: InProcessCli,
) -> None:
    document: dict[str, Any] = cli.json("sources", "put", "e1", "--url", "http://127.0.0.1:1")
    assert document["kind"] == "exporter" and document["reset_policy"] == "skip"
    assert not {"selector", "account_label", "node_label", "auth"} & set(document)


@pytest.mark.parametrize(("extra", "says"), [
    (["--selector", "rate(x[5m])"], "series selector"),
    (["--selector", 'x{a="1"}[5m]'], "series selector"),
    (["--account-label", "__name__"], "--account-label"),
    (["--account-label", "bucket-id"], "--account-label"),
    (["--node-label", "bucket"], "different labels"),
    (["--auth", "bearer"], "--token-secret"),
    (["--auth", "sigv4", "--token-secret", "ssm:/x"], "drop --token-secret"),
])
def test_bad_prometheus_arguments_exit_2_with_one_line(cli: InProcessCli, extra: list[str],
                                                       says: str) -> None:
    # later options win in argparse: the bad one replaces the good one of PUT
    assert says in cli.refused(*PUT, *extra)
    assert cli.app.state.sources.list_sources() == []


@pytest.mark.parametrize(("extra", "says"), [
    (["--node-label", "server", "--node-id", "n1"], "not allowed with argument"),
    (["--auth", "kerberos"], "argument --auth: invalid choice"),
])
def test_argparse_refuses_with_exit_2_and_one_line(
    cli: InProcessCli, capsys: pytest.CaptureFixture[str], extra: list[str], says: str,
) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.run(*PUT, *extra)
    err = capsys.readouterr().err
    assert caught.value.code == 2 and says in err and err.count("\n") == 1


def test_a_prometheus_source_needs_its_selector_and_account_label(cli: InProcessCli) -> None:
    line = cli.refused("sources", "put", "p1", "--kind", "prometheus", "--url",
                       "http://127.0.0.1:9090", "--selector", "x_total")
    assert "--selector and --account-label" in line


def test_prometheus_options_on_an_exporter_source_are_refused(cli: InProcessCli) -> None:
    line = cli.refused("sources", "put", "e1", "--url", "http://127.0.0.1:1", "--selector", "x")
    assert "--kind prometheus" in line


def test_a_stored_prometheus_source_reads_back_every_option(cli: InProcessCli) -> None:
    cli.json(*PUT, "--node-label", "server")
    stored = cli.app.state.sources.get_source("p1")
    assert (stored.kind, stored.selector, stored.account_label, stored.node_label,
            stored.auth, stored.reset_policy, stored.lag_seconds) == (
        SourceKind.PROMETHEUS, SELECTOR, "bucket", "server", SourceAuth.NONE,
        ResetPolicy.FROM_ZERO, 120)
    assert NOW + timedelta(seconds=45) == stored.start
