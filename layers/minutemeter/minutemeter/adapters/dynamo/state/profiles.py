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

    def put_profile(self, account_id: str, profile: BillingProfile) -> None:
        item = {
            **profile_key(account_id),
            "type": "profile",
            "account_id": account_id,
            "included_bytes": profile.included_bytes,
            "price_per_byte": profile.price_per_byte,
            "multiplier": profile.multiplier,
            "pricing_rule_version": profile.pricing_rule_version,
        }
        self.table.put(item)


def _profile_from_item(item: Item) -> BillingProfile:
    return BillingProfile(
        included_bytes=int(item["included_bytes"]),
        price_per_byte=Decimal(item["price_per_byte"]),
        multiplier=Decimal(item["multiplier"]),
        pricing_rule_version=str(item["pricing_rule_version"]),
    )
