"""The end of ``make demo``: the month's statements, the audit, and delivery of the ledger to a
local Stripe (``local/stripe_server.py``, driven through the official ``stripe`` library), twice:
the second delivery sends nothing, and what Stripe received equals the ledger."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import redirect_stdout
from io import StringIO

from minutemeter.bootstrap import App
from minutemeter.cli import main as cli
from minutemeter.domain.model import LedgerEntry
from minutemeter.local.stripe_server import LocalStripe
from minutemeter.settings import DEFAULT_PROFILE

STRIPE_KEY = "sk_test_minutemeter_demo"
KEY_VARIABLE = "MINUTEMETER_DEMO_STRIPE_KEY"
METER = "storage_bytes"


def statements_and_delivery(
    app: App, entries: Sequence[LedgerEntry], accounts: Sequence[str], say: Callable[[str], None]
) -> bool:
    """Prints the statements and the delivery; True when Stripe's sums equal the ledger's."""
    months = sorted({e.usage.minute.strftime("%Y-%m") for e in entries})
    for month in months:
        code, out = _cli(app, "statements", "--month", month)
        say(f"\nminutemeter statements --month {month} (one read per account, no scan): "
            f"exit {code}")
        say(f"  {'account':36}  {'bytes':>13}  {'included':>11}  {'billable':>13}  "
            f"{'amount':>14}  entries  corrections")
        for line in out.splitlines():
            s = json.loads(line)
            say(f"  {s['account_id']:36}  {s['bytes']:>13}  {s['included_bytes']:>11}  "
                f"{s['billable_bytes']:>13}  {s['amount']:>14}  {s['entries']:>7}  "
                f"{s['corrections']:>11}")
        code, out = _cli(app, "audit", "--month", month)
        audit = json.loads(out)
        say(f"minutemeter audit --month {month}: exit {code}, {audit['accounts_checked']} "
            f"accounts, statement = sum of entries = quota used: "
            f"{'yes' if code == 0 else 'NO'}")

    customers = {a: f"cus_demo{n}" for n, a in enumerate(accounts)}
    with LocalStripe(api_key=STRIPE_KEY, customers=customers.values(), meters=[METER]) as stripe:
        os.environ[KEY_VARIABLE] = STRIPE_KEY
        say(f"\ndelivery to Stripe (a local Stripe on {stripe.url}, through the official "
            "stripe library):")
        for account, customer in customers.items():
            _put_customer(app, account, customer, entries)
        _cli(app, "sinks", "put", "stripe-demo", "--kind", "stripe", "--url", stripe.url,
             "--meter", METER, "--value", "billable", "--api-key-env", KEY_VARIABLE, check=True)
        for attempt in ("first", "again"):
            code, out = _cli(app, "sink", "deliver", "stripe-demo")
            report = _report(out)
            say(f"  minutemeter sink deliver stripe-demo ({attempt}): exit {code}, "
                f"delivered {report.get('delivered', 0)}, "
                f"already delivered {report.get('already_delivered', 0)}, "
                f"nothing to send (0 billable) {report.get('skipped_zero', 0)}")
        say("  what the local Stripe received (a sum meter per customer):")
        for line in stripe.report_lines():
            say(f"    {line}")
        billed: dict[str, int] = defaultdict(int)
        for entry in entries:
            billed[customers[entry.usage.account_id]] += entry.billable_bytes
        received = {customer: total for (customer, _meter), total in stripe.sums().items()}
        matches = received == {c: v for c, v in billed.items() if v}
        say(f"  each customer's meter equals the ledger's billable bytes, every entry sent once: "
            f"{'yes' if matches else 'NO'}")
    return matches


def _put_customer(app: App, account: str, customer: str, entries: Sequence[LedgerEntry]) -> None:
    """The account's profile, as it is (or the default one), with its Stripe customer id."""
    profile = next((e.profile for e in entries if e.usage.account_id == account),
                   DEFAULT_PROFILE)
    _cli(app, "profiles", "put", account, "--included-bytes", str(profile.included_bytes),
         "--price-per-byte", format(profile.price_per_byte, "f"),
         "--multiplier", format(profile.multiplier, "f"),
         "--pricing-version", profile.pricing_rule_version, "--customer", customer, check=True)


def _report(out: str) -> dict[str, object]:
    """The one sink's report in ``sink deliver``'s JSON document."""
    reports: list[dict[str, object]] = json.loads(out)["sinks"]
    return reports[0]


def _cli(app: App, *argv: str, check: bool = False) -> tuple[int, str]:
    buffer = StringIO()
    with redirect_stdout(buffer):
        code = cli(list(argv), app=app)
    if check and code != 0:
        raise SystemExit(f"minutemeter {' '.join(argv)} failed with exit {code}")
    return code, buffer.getvalue()
