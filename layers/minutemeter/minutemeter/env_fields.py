"""Dataclass fields read from environment variables, each declared once.

A field made with :func:`env_field` carries in its metadata the variable it is read from, how
the variable's text is parsed (a :class:`Parser`) and the rule its value must meet (a
:class:`Rule`); :func:`env_group` does the same for a value built from several variables and
checked as a whole. :func:`read_env_fields` reads every such field of a dataclass from one
mapping: an unset variable leaves the field's default. Every failure is a :class:`ConfigError`
that names the variable.

Nothing here reads ``os.environ``: the caller hands the mapping over.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast

from minutemeter.domain.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)
G = TypeVar("G", bound="DataclassInstance")

_SOURCE = "minutemeter.env_fields"  # the metadata key of a field read from the environment


@dataclass(frozen=True)
class Parser(Generic[T]):
    """How a variable's text becomes a value: ``parse(variable, text)``, raising
    :class:`ConfigError` for malformed text. ``blank_is_default``: an empty value means the
    default (numbers, flags), rather than being parsed (text, where empty means empty)."""

    parse: Callable[[str, str], T]
    blank_is_default: bool = True


@dataclass(frozen=True)
class Rule(Generic[T_contra]):
    """What a parsed value must meet; ``requirement`` completes the sentence "VARIABLE ..."."""

    holds: Callable[[T_contra], bool]
    requirement: str


# -- parsers --------------------------------------------------------------------------------------
def _integer(variable: str, text: str) -> int:
    try:
        return int(text)
    except ValueError as exc:
        raise ConfigError(f"{variable} must be an integer, got {text!r}") from exc


def _decimal(variable: str, text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise ConfigError(f"{variable} must be a decimal number, got {text!r}") from exc
    if not value.is_finite():
        raise ConfigError(f"{variable} must be finite, got {text!r}")
    return value


def _seconds(variable: str, text: str) -> float:
    return float(_decimal(variable, text))


def _boolean(variable: str, text: str) -> bool:
    if text.lower() in {"1", "true", "yes"}:
        return True
    if text.lower() in {"0", "false", "no"}:
        return False
    raise ConfigError(f"{variable} must be true or false, got {text!r}")


def _text(variable: str, text: str) -> str:
    return text


def _text_or_none(variable: str, text: str) -> str | None:
    return text.strip() or None


def _text_list(variable: str, text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


INTEGER = Parser(_integer)
DECIMAL = Parser(_decimal)
SECONDS = Parser(_seconds)
"""Decimal text (``7.5``, ``1e1``) as float seconds; infinities and NaN refused."""
BOOLEAN = Parser(_boolean)
"""``1``/``true``/``yes`` or ``0``/``false``/``no``, any case."""
TEXT = Parser(_text, blank_is_default=False)
TEXT_OR_NONE = Parser(_text_or_none, blank_is_default=False)
"""Stripped text; set but blank means none (not the default)."""
TEXT_LIST = Parser(_text_list, blank_is_default=False)
"""Comma-separated items, stripped, blanks dropped; set but blank means no items."""


# -- rules ----------------------------------------------------------------------------------------
def between(low: float, high: float, note: str = "") -> Rule[float]:
    """``low <= value <= high``, both ends included; ``note`` is appended to the message."""
    return Rule(lambda value: low <= value <= high, f"must be between {low} and {high}{note}")


NOT_EMPTY: Rule[str] = Rule(lambda text: text != "", "must not be empty")
POSITIVE: Rule[float] = Rule(lambda value: value > 0, "must be > 0")
NOT_NEGATIVE: Rule[float] = Rule(lambda value: value >= 0, "must be >= 0")


# -- fields ---------------------------------------------------------------------------------------
class _EnvSource(Protocol):
    def read(self, environ: Mapping[str, str], default: Any) -> Any: ...

    def check(self, value: Any) -> None: ...


@dataclass(frozen=True)
class _Variable(Generic[T]):
    variable: str
    parser: Parser[T]
    rule: Rule[T] | None = None

    def read(self, environ: Mapping[str, str], default: T) -> T:
        text = environ.get(self.variable)
        if text is None or (text == "" and self.parser.blank_is_default):
            return default
        return self.parser.parse(self.variable, text)

    def check(self, value: T) -> None:
        if self.rule is not None and not self.rule.holds(value):
            raise ConfigError(f"{self.variable} {self.rule.requirement}")


@dataclass(frozen=True)
class _Group(Generic[G]):
    parts: Mapping[str, _Variable[Any]]  # a field of the value -> the variable it is read from
    check_value: Callable[[G, Mapping[str, str]], None]

    def read(self, environ: Mapping[str, str], default: G) -> G:
        return replace(default, **{
            name: part.read(environ, getattr(default, name)) for name, part in self.parts.items()
        })

    def check(self, value: G) -> None:
        self.check_value(value, {name: part.variable for name, part in self.parts.items()})


def env_field(variable: str, parser: Parser[T], default: T, rule: Rule[T] | None = None) -> T:
    """A dataclass field (with ``default``) read from ``variable`` with ``parser``, whose value
    must meet ``rule``: ``ConfigError("VARIABLE <requirement>")`` otherwise."""
    source = _Variable(variable, parser, rule)
    return field(default=default, metadata={_SOURCE: source})


def env_group(
    default: G,
    parts: Mapping[str, tuple[str, Parser[Any]]],
    check: Callable[[G, Mapping[str, str]], None],
) -> G:
    """A dataclass field holding a frozen dataclass value: ``default`` with each field named in
    ``parts`` read from its variable. ``check(value, variables)`` judges the whole value and
    raises :class:`ConfigError`; ``variables`` maps each part to its variable's name."""
    source = _Group(
        {name: _Variable(variable, parser) for name, (variable, parser) in parts.items()}, check
    )
    return field(default=default, metadata={_SOURCE: source})


def read_env_fields(cls: type[DataclassInstance], environ: Mapping[str, str]) -> dict[str, Any]:
    """The keyword arguments for ``cls``: every field of it made with :func:`env_field` or
    :func:`env_group`, read from ``environ`` (unset: the field's default). All fields are
    parsed first, then each value is checked, in field order."""
    sources: dict[str, tuple[_EnvSource, Any]] = {}
    for spec in fields(cls):
        if _SOURCE not in spec.metadata or spec.default is MISSING:
            raise TypeError(f"{cls.__name__}.{spec.name} is not a field read from the environment")
        sources[spec.name] = (cast(_EnvSource, spec.metadata[_SOURCE]), spec.default)
    values = {name: source.read(environ, default) for name, (source, default) in sources.items()}
    for name, (source, _) in sources.items():
        source.check(values[name])
    return values
