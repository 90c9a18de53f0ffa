"""Billing profiles on the state table (:class:`minutemeter.ports.ProfileStore`): one item per
account (``keys.profile_key``), money as DynamoDB numbers (``Decimal``, never floats)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

from minutemeter.adapters.dynamo.base import DynamoTable, Item
from minutemeter.adapters.dynamo.state.keys import profile_key
from minutemeter.domain.model import BillingProfile


class DynamoProfileStore:
    """:class:`minutemeter.ports.ProfileStore` on a DynamoDB table."""

    def __init__(self, table: DynamoTable) -> None:
        self.table = table

    def get_profiles(self, account_ids: Iterable[str]) -> Mapping[str, BillingProfile]:
        """Eventually consistent (half the read units of every run): a profile put a moment
        ago may rate the next minute with the one before it, as one put a moment later would;
        each entry records the profile it was rated with."""
        keys = [profile_key(a) for a in account_ids]
        found = self.table.batch_get(keys, consistent=False) if keys else []
        return {str(i["account_id"]): _profile_from_item(i) for i in found}

    def put_profile(
        self, account_id: str, profile: BillingProfile, *, customer: str | None = None
    ) -> None:
        """One UpdateItem: the profile's fields replaced, the billing ``customer`` set when
        given and otherwise kept as it is (it is not part of :class:`BillingProfile`, which
        every ledger entry copies)."""
        fields = {
            "#type": "profile",
            "account_id": account_id,
            "included_bytes": profile.included_bytes,
            "price_per_byte": profile.price_per_byte,
            "multiplier": profile.multiplier,
            "pricing_rule_version": profile.pricing_rule_version,
            "customer": customer,
        }
        given = {name: value for name, value in fields.items() if value is not None}
        expression = "SET " + ", ".join(f"{name} = :{name.lstrip('#')}" for name in given)
        self.table.update(profile_key(account_id), expression,
                          values={f":{name.lstrip('#')}": value for name, value in given.items()},
                          names={"#type": "type"})

    def get_customers(self, account_ids: Iterable[str]) -> Mapping[str, str]:
        """The billing system's id of each account that has one (``profiles put --customer``),
        by account id; eventually consistent, like :meth:`get_profiles`."""
        keys = [profile_key(a) for a in account_ids]
        found = (self.table.batch_get(keys, projection="account_id, customer", consistent=False)
                 if keys else [])
        return {str(i["account_id"]): str(i["customer"]) for i in found if i.get("customer")}


def _profile_from_item(item: Item) -> BillingProfile:
    return BillingProfile(
        included_bytes=int(item["included_bytes"]),
        price_per_byte=Decimal(item["price_per_byte"]),
        multiplier=Decimal(item["multiplier"]),
        pricing_rule_version=str(item["pricing_rule_version"]),
    )
