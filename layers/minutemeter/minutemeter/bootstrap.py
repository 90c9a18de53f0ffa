"""The composition root: the only place that wires real (or given) adapters together."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

from minutemeter.adapters.dynamo.base import CapacityMeter, DynamoTable
from minutemeter.adapters.dynamo.ledger import DynamoLedgerStore
from minutemeter.adapters.dynamo.state import DynamoStateStore
from minutemeter.adapters.exporter_http import HttpExporter
from minutemeter.adapters.secrets import SecretTokenLookup
from minutemeter.adapters.system import SystemClock
from minutemeter.ports import Clock, Exporter
from minutemeter.service.collect import CollectDeps
from minutemeter.settings import Settings, load_settings


@dataclass(frozen=True)
class App:
    """Everything a handler or a CLI command needs, created once."""

    settings: Settings
    clock: Clock
    dynamodb: Any
    meter: CapacityMeter
    ledger: DynamoLedgerStore
    state: DynamoStateStore
    exporter: Exporter

    @property
    def collect_deps(self) -> CollectDeps:
        return CollectDeps(
            settings=self.settings,
            clock=self.clock,
            exporter=self.exporter,
            ledger=self.ledger,
            state=self.state,
        )


def bootstrap(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    exporter: Exporter | None = None,
    session: boto3.session.Session | None = None,
) -> App:
    """Wire the application. Explicit arguments beat the environment, which beats defaults.

    boto3 resolves region, credentials and ``AWS_ENDPOINT_URL_DYNAMODB`` itself.
    """
    settings = settings or load_settings(os.environ)
    session = session or boto3.session.Session()
    client_config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        max_pool_connections=settings.commit_concurrency + 4,
        connect_timeout=5,
        read_timeout=20,
    )
    dynamodb = session.client("dynamodb", config=client_config)
    meter = CapacityMeter()

    def secret_client(service: str) -> Any:
        if service == "secretsmanager":
            return session.client("secretsmanager", config=client_config)
        return session.client("ssm", config=client_config)

    tokens = SecretTokenLookup(secret_client)
    return App(
        settings=settings,
        clock=clock or SystemClock(),
        dynamodb=dynamodb,
        meter=meter,
        ledger=DynamoLedgerStore(DynamoTable(dynamodb, settings.ledger_table, meter)),
        state=DynamoStateStore(DynamoTable(dynamodb, settings.state_table, meter)),
        exporter=exporter
        or HttpExporter(
            timeout_seconds=settings.http_timeout_seconds,
            retries=settings.http_retries,
            token_lookup=tokens,
        ),
    )
