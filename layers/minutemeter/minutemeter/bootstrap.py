"""The composition root: the only place that wires real (or given) adapters together."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config

from minutemeter.adapters.dynamo.base import DynamoTable
from minutemeter.adapters.dynamo.ledger import DynamoLedgerStore
from minutemeter.adapters.dynamo.state import dynamo_state_stores
from minutemeter.adapters.dynamo.wire import CapacityMeter
from minutemeter.adapters.exporter_http import HttpExporter, TokenLookup
from minutemeter.adapters.exporter_reader import ExporterReader
from minutemeter.adapters.prometheus_auth import Authenticator, SessionFactory, SigV4Signer
from minutemeter.adapters.prometheus_http import PrometheusHttp
from minutemeter.adapters.prometheus_reader import PrometheusReader
from minutemeter.adapters.secrets import SecretTokenLookup
from minutemeter.adapters.system import SystemClock
from minutemeter.domain.delivery import SinkConfig, SinkKind
from minutemeter.domain.errors import ConfigError, MinutemeterError
from minutemeter.domain.model import SourceKind
from minutemeter.ports import (
    Budget,
    Clock,
    CounterReader,
    LedgerStore,
    Sink,
    SourceReaders,
    StateStores,
)
from minutemeter.service.delivery import DeliveryDeps
from minutemeter.service.deps import BillingDeps
from minutemeter.settings import Settings, load_settings
from minutemeter.stack import StackOutputs, describe_stack, settings_for_stack

# boto3 reads only AWS_DEFAULT_REGION; AWS_REGION (what Lambda and the other SDKs read) wins here.
ENV_REGION = "AWS_REGION"
ENV_DEFAULT_REGION = "AWS_DEFAULT_REGION"
ENV_MAX_ATTEMPTS = "AWS_MAX_ATTEMPTS"  # botocore's own: total attempts, when set
DEFAULT_RETRIES = 5


@dataclass(frozen=True)
class App:
    """Everything a handler or a CLI command needs, created once: the ports, each wired to its
    adapter (``state``: the state table's stores, one per aggregate)."""

    settings: Settings
    clock: Clock
    dynamodb: Any
    meter: CapacityMeter
    ledger: LedgerStore
    state: StateStores
    readers: SourceReaders
    sinks: SinkAdapters = field(default_factory=lambda: SinkAdapters({}))

    def delivery_deps(self, budget: Budget | None = None) -> DeliveryDeps:
        """What :mod:`minutemeter.service.delivery` takes; ``budget``: the run's time."""
        return DeliveryDeps(self.state.deliveries, self.state.profiles, self.clock, budget)

    @property
    def billing_deps(self) -> BillingDeps:
        """What :func:`~minutemeter.service.collect.collect_source` and
        :func:`~minutemeter.service.reconcile.reconcile` take."""
        return BillingDeps.from_stores(
            self.settings, self.clock, self.readers, self.ledger, self.state
        )


ReaderBuilder = Callable[[], CounterReader]


def reader_builders(
    settings: Settings, tokens: TokenLookup, session: SessionFactory = lambda: aws_session(),
) -> dict[SourceKind, ReaderBuilder]:
    """The factory of source readers: how the adapter of each :class:`SourceKind` is built.

    A kind is read only if it has a builder here (else its runs fail with
    ``SourceKindError``); adding a kind of source adds its line. ``session``: the boto3
    session whose credentials and region sign SigV4 requests (made on first use)."""
    return {
        SourceKind.PROMETHEUS: lambda: PrometheusReader(PrometheusHttp(
            timeout_seconds=settings.http_timeout_seconds,
            retries=settings.http_retries,
            auth=Authenticator(tokens, SigV4Signer(session)),
        )),
        SourceKind.EXPORTER: lambda: ExporterReader(HttpExporter(
            timeout_seconds=settings.http_timeout_seconds,
            retries=settings.http_retries,
            token_lookup=tokens,
        )),
    }


class LazyReaders(Mapping[SourceKind, CounterReader]):
    """Kind -> reader, each reader built by its builder on first use, then kept (one client
    per kind and process, none for kinds no source uses)."""

    def __init__(self, builders: Mapping[SourceKind, ReaderBuilder]) -> None:
        self._builders = dict(builders)
        self._built: dict[SourceKind, CounterReader] = {}

    def __getitem__(self, kind: SourceKind) -> CounterReader:
        if kind not in self._built:
            self._built[kind] = self._builders[kind]()  # KeyError: a kind with no reader
        return self._built[kind]

    def __iter__(self) -> Iterator[SourceKind]:
        return iter(self._builders)

    def __len__(self) -> int:
        return len(self._builders)


SinkBuilder = Callable[[SinkConfig], Sink]
ApiKeyLookup = Callable[[SinkConfig], str]


def sink_builders(api_keys: ApiKeyLookup) -> dict[SinkKind, SinkBuilder]:
    """The factory of billing sinks: how the adapter of each :class:`SinkKind` is built from a
    registered sink. The official clients are imported only when a sink of their kind is used
    (a collector never loads them)."""

    def stripe(config: SinkConfig) -> Sink:
        from minutemeter.adapters.sinks.stripe_sink import StripeSink

        return StripeSink(config, api_keys(config))

    def lago(config: SinkConfig) -> Sink:
        from minutemeter.adapters.sinks.lago_sink import LagoSink

        return LagoSink(config, api_keys(config))

    return {SinkKind.STRIPE: stripe, SinkKind.LAGO: lago}


def sink_api_keys(tokens: SecretTokenLookup, environ: Mapping[str, str]) -> ApiKeyLookup:
    """A sink's API key: the environment variable it names, or its Secrets Manager secret
    (cached like exporter tokens). Never logged; errors name where the key was looked for."""

    def api_key(sink: SinkConfig) -> str:
        if sink.api_key_env:
            value = environ.get(sink.api_key_env)
            if not value:
                raise ConfigError(f"sink {sink.name!r}: environment variable "
                                  f"{sink.api_key_env} (its API key) is not set")
            return value
        if sink.api_key_secret:
            return tokens.read(sink.api_key_secret, what=f"API key of sink {sink.name!r}",
                               error=MinutemeterError)
        raise ConfigError(f"sink {sink.name!r} names no API key (--api-key-secret or "
                          "--api-key-env)")

    return api_key


class SinkAdapters:
    """A registered sink -> its adapter, built by its kind's builder on first use and kept
    while the sink's configuration stays the same (one client per sink and process)."""

    def __init__(self, builders: Mapping[SinkKind, SinkBuilder]) -> None:
        self._builders = dict(builders)
        self._built: dict[str, Sink] = {}

    def __call__(self, config: SinkConfig) -> Sink:
        built = self._built.get(config.name)
        if built is None or built.config != config:
            builder = self._builders.get(config.kind)
            if builder is None:
                raise ConfigError(f"sink {config.name!r}: no adapter for kind {config.kind}")
            built = self._built[config.name] = builder(config)
        return built


def region_from(environ: Mapping[str, str]) -> str | None:
    """``AWS_REGION``, else ``AWS_DEFAULT_REGION``; None leaves it to the profile's region."""
    return environ.get(ENV_REGION) or environ.get(ENV_DEFAULT_REGION) or None


def aws_session(environ: Mapping[str, str] | None = None) -> boto3.session.Session:
    """A boto3 session with the region of :func:`region_from` (credentials: the usual chain)."""
    return boto3.session.Session(region_name=region_from(os.environ if environ is None
                                                         else environ))


def client_config(settings: Settings, environ: Mapping[str, str] | None = None) -> Config:
    """Timeouts and standard-mode retries (``DEFAULT_RETRIES``, unless ``AWS_MAX_ATTEMPTS``
    says how many attempts in all)."""
    retries: dict[str, Any] = {"mode": "standard"}
    if not (os.environ if environ is None else environ).get(ENV_MAX_ATTEMPTS):
        retries["max_attempts"] = DEFAULT_RETRIES
    return Config(
        retries=retries,  # type: ignore[arg-type]
        max_pool_connections=settings.commit_concurrency + 4,
        connect_timeout=5,
        read_timeout=20,
    )


def load_stack(name: str, session: boto3.session.Session | None = None) -> StackOutputs:
    """The outputs of the deployed stack ``name`` (see :mod:`minutemeter.stack`)."""
    session = session or aws_session()
    client = session.client("cloudformation", config=client_config(Settings()))
    return describe_stack(client, name)


def bootstrap(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    readers: Mapping[SourceKind, CounterReader] | None = None,
    session: boto3.session.Session | None = None,
    stack: StackOutputs | None = None,
    sinks: Mapping[SinkKind, SinkBuilder] | None = None,
) -> App:
    """Wire the application. Explicit arguments beat the environment, which beats defaults.

    The region comes from ``AWS_REGION`` or ``AWS_DEFAULT_REGION``; boto3 resolves credentials
    and ``AWS_ENDPOINT_URL_DYNAMODB`` itself. With ``stack``, its table names replace the
    defaults (an explicitly set ``MINUTEMETER_*_TABLE`` still wins). ``readers`` replace the
    factory's (:func:`reader_builders`) for the kinds they name (a fake, a tuned client);
    ``sinks`` likewise replace :func:`sink_builders`' builders.
    """
    settings = settings or load_settings(os.environ)
    if stack is not None:
        settings = settings_for_stack(settings, stack, os.environ)
    session = session or aws_session()
    config = client_config(settings)
    dynamodb = session.client("dynamodb", config=config)
    meter = CapacityMeter()

    def secret_client(service: str) -> Any:
        if service == "secretsmanager":
            return session.client("secretsmanager", config=config)
        return session.client("ssm", config=config)

    tokens = SecretTokenLookup(secret_client)
    return App(
        settings=settings,
        clock=clock or SystemClock(),
        dynamodb=dynamodb,
        meter=meter,
        ledger=DynamoLedgerStore(DynamoTable(dynamodb, settings.ledger_table, meter)),
        state=dynamo_state_stores(DynamoTable(dynamodb, settings.state_table, meter)),
        readers=LazyReaders({
            **reader_builders(settings, tokens, lambda: session),
            **{kind: _given(reader) for kind, reader in (readers or {}).items()},
        }),
        sinks=SinkAdapters({**sink_builders(sink_api_keys(tokens, os.environ)),
                            **(sinks or {})}),
    )


def _given(reader: CounterReader) -> ReaderBuilder:
    return lambda: reader


# -- the warm Lambda container ---------------------------------------------------------------
APP_GLOBAL = "_app"


def warm_app(handler_globals: MutableMapping[str, Any]) -> App:
    """The App of a handler module: its global ``_app``, wired by :func:`bootstrap` on the first
    invocation of the container and reused by the warm ones (``warm_app(globals())``).

    Tests set the handler's ``_app`` to inject an App, and read it to see the one in use."""
    app: App | None = handler_globals.get(APP_GLOBAL)
    if app is None:
        app = handler_globals[APP_GLOBAL] = bootstrap()
    return app
