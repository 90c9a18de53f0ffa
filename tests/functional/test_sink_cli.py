"""``profiles put --customer``, ``sinks put|list`` and ``sink deliver`` through the CLI, on
moto, with a FakeSink standing in for the billing system (its real adapters are tested
against their local servers)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws

from minutemeter.adapters.dynamo.schema import create_tables
from minutemeter.bootstrap import bootstrap
from minutemeter.domain.delivery import SinkConfig, SinkKind
from minutemeter.domain.model import QuotaPlan, SourceConfig
from minutemeter.domain.rating import included_total
from minutemeter.settings import Settings
from tests.support.cli import InProcessCli
from tests.support.clock import FakeClock
from tests.support.sinks import PROFILE, FakeSink, make_entries

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=2)
ACCOUNT = "6f1c2a4e-0b7d-4c55-9a0e-3f2b8d1e7c90"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:stripe-key-AbCdEf"


def _argparse_refuses(cli: InProcessCli, capsys: pytest.CaptureFixture[str],
                      *argv: str) -> str:
    """argparse's own refusals exit 2 by SystemExit: one line on stderr, nothing stored."""
    with pytest.raises(SystemExit) as caught:
        cli.run(*argv)
    err = capsys.readouterr().err
    assert caught.value.code == 2 and err.count("\n") == 1, err
    assert cli.app.state.deliveries.list_sinks() == []
    return err


@dataclass
class SinkCli:
    cli: InProcessCli
    clock: FakeClock
    sinks: dict[str, FakeSink]

    def put_profile(self, *extra: str) -> dict[str, object]:
        document: dict[str, object] = self.cli.json(
            "profiles", "put", ACCOUNT, "--included-bytes", "1000", "--price-per-byte",
            "0.000000002", "--pricing-version", "v1", *extra)
        return document


@pytest.fixture
def sink_cli(capsys: pytest.CaptureFixture[str]) -> Iterator[SinkCli]:
    with mock_aws():
        clock = FakeClock(NOW)
        sinks: dict[str, FakeSink] = {}

        def fake(config: SinkConfig) -> FakeSink:
            return sinks.setdefault(config.name, FakeSink(config, clock))

        settings = Settings(ledger_table="sink-ledger", state_table="sink-state")
        app = bootstrap(settings, clock=clock, sinks={SinkKind.STRIPE: fake, SinkKind.LAGO: fake},
                        session=boto3.session.Session(region_name="us-east-1"))
        create_tables(app.dynamodb, ledger_table="sink-ledger", state_table="sink-state")
        yield SinkCli(InProcessCli(app, capsys), clock, sinks)


def test_profiles_put_sets_and_keeps_the_customer(sink_cli: SinkCli) -> None:
    assert sink_cli.put_profile("--customer", "cus_NffrFeUfNV2Hib")["customer"] == (
        "cus_NffrFeUfNV2Hib")
    assert "customer" not in sink_cli.put_profile()  # not given: kept, not changed
    profiles = sink_cli.cli.app.state.profiles
    assert profiles.get_customers([ACCOUNT]) == {ACCOUNT: "cus_NffrFeUfNV2Hib"}
    error = sink_cli.cli.refused("profiles", "put", ACCOUNT, "--included-bytes", "1",
                                 "--price-per-byte", "0", "--pricing-version", "v1",
                                 "--customer", "has space")
    assert "--customer" in error


def test_sinks_put_and_list(sink_cli: SinkCli) -> None:
    cli = sink_cli.cli
    stripe = cli.json("sinks", "put", "billing", "--kind", "stripe", "--url",
                      "https://api.stripe.com", "--meter", "bytes_out", "--value", "billable",
                      "--api-key-secret", SECRET)
    assert stripe == {"name": "billing", "kind": "stripe", "url": "https://api.stripe.com",
                      "meter": "bytes_out", "value": "billable", "api_key_secret": SECRET,
                      "api_key_env": None}
    cli.json("sinks", "put", "lago", "--kind", "lago", "--url", "http://127.0.0.1:3000",
             "--meter", "bytes", "--value", "bytes", "--api-key-env", "LAGO_API_KEY")
    assert [s["name"] for s in cli.lines("sinks", "list")] == ["billing", "lago"]


@pytest.mark.parametrize(("extra", "by_argparse", "says"), [
    (["--api-key-env", "K", "--api-key-secret", SECRET], True, "not allowed with argument"),
    ([], True, "one of the arguments --api-key-secret --api-key-env is required"),
    (["--api-key-secret", "sk_live_123"], False, "--api-key-secret must be a Secrets Manager"),
    (["--api-key-env", "sk live"], False, "--api-key-env must be"),
])
def test_sinks_put_takes_exactly_one_key_reference(
    sink_cli: SinkCli, capsys: pytest.CaptureFixture[str], extra: list[str], by_argparse: bool,
    says: str,
) -> None:
    argv = ("sinks", "put", "s", "--kind", "stripe", "--url", "https://api.stripe.com",
            "--meter", "m", "--value", "bytes", *extra)
    error = (_argparse_refuses(sink_cli.cli, capsys, *argv) if by_argparse
             else sink_cli.cli.refused(*argv))
    assert says in error
    assert "sk_live_123" not in error  # a pasted key is never repeated


@pytest.mark.parametrize(("name", "option", "value"), [
    ("s", "--url", "ftp://api.stripe.com"), ("s", "--url", "stripe.com"),
    ("s", "--kind", "paypal"), ("s", "--value", "amount"), ("-bad name", "--meter", "m"),
])
def test_sinks_put_refuses_bad_values(
    sink_cli: SinkCli, capsys: pytest.CaptureFixture[str], name: str, option: str, value: str,
) -> None:
    options = {"--kind": "stripe", "--url": "https://api.stripe.com", "--meter": "m",
               "--value": "bytes", option: value}
    argv = ("sinks", "put", name, *[x for pair in options.items() for x in pair],
            "--api-key-env", "KEY")
    if option in {"--kind", "--value"}:  # choices: argparse's refusal
        _argparse_refuses(sink_cli.cli, capsys, *argv)
    else:
        sink_cli.cli.refused(*argv)
    assert sink_cli.cli.app.state.deliveries.list_sinks() == []


def _ledger(sink_cli: SinkCli, sizes: list[int]) -> None:
    app = sink_cli.cli.app
    app.state.sources.put_source(SourceConfig("src", "http://127.0.0.1:1", T0))
    entries = make_entries(ACCOUNT, T0, sizes, used_before=PROFILE.included_bytes)
    first = entries[0]
    plan = QuotaPlan(first.batch_id, "src", ACCOUNT, first.quota_month, 1000, PROFILE, "run-1",
                     first.collected_at, tuple(e.usage for e in entries))
    app.ledger.reserve_quota(plan, expected_version=0, new_used=1000 + included_total(plan))
    app.ledger.write_reserved(entries)


def test_sink_deliver_sends_each_entry_once_and_exits_3_while_some_wait(
    sink_cli: SinkCli,
) -> None:
    cli = sink_cli.cli
    cli.json("sinks", "put", "billing", "--kind", "stripe", "--url", "https://api.stripe.com",
             "--meter", "bytes_out", "--value", "billable", "--api-key-env", "STRIPE_KEY")
    sink_cli.put_profile("--customer", "cus_A")
    _ledger(sink_cli, [100, 200, 300])
    sink_cli.sinks.setdefault("billing", FakeSink(cli.app.state.deliveries.get_sink("billing"),
                                                  sink_cli.clock)).down = True
    waiting = cli.json("sink", "deliver", code=3)
    assert (waiting["undelivered"], waiting["since"]) == (3, "2026-10-01T00:00:00Z")
    sink = sink_cli.sinks["billing"]
    sink.down = False
    done = cli.json("sink", "deliver", "billing", "--since", "2026-11-22T00:00:00Z")
    (report,) = done["sinks"]
    assert (report["sink"], report["delivered"], done["undelivered"]) == ("billing", 3, 0)
    assert [e.value for e in sink.counted] == [100, 200, 300]
    again = cli.json("sink", "deliver")
    assert again["sinks"][0]["already_delivered"] == 3 and sink.requests == 3


def test_sink_deliver_of_an_unknown_sink_is_a_bad_argument(sink_cli: SinkCli) -> None:
    assert "not registered" in sink_cli.cli.refused("sink", "deliver", "nope")
