"""The PromQL a ``prometheus`` source is configured with: a series selector and label names.

Only a plain series selector is accepted (``name``, ``name{matchers}`` or ``{matchers}``):
the reader appends the range itself (``selector[range]``) so that Prometheus returns raw
samples; a function, an operator, a range, ``offset`` or ``@`` would change what is read.
Prometheus checks the rest (an invalid regular expression, a selector that matches only empty
names) and answers ``bad_data``, which fails the run cleanly.
"""

from __future__ import annotations

import re

from minutemeter.domain.errors import InputError
from minutemeter.domain.text import shorten

MAX_SELECTOR_CHARS = 1000
_LABEL = r"[A-Za-z_][A-Za-z0-9_]*"
_METRIC = r"[A-Za-z_:][A-Za-z0-9_:]*"
_STRING = r'"(?:[^"\\\n]|\\.)*"' + r"|'(?:[^'\\\n]|\\.)*'" + r"|`[^`]*`"
_MATCHER = rf"\s*{_LABEL}\s*(?:=~|!~|!=|=)\s*(?:{_STRING})\s*"
_MATCHERS = rf"\{{(?:{_MATCHER}(?:,{_MATCHER})*,?)?\s*\}}"
_SELECTOR = re.compile(rf"\s*(?:{_METRIC}\s*(?:{_MATCHERS})?|{_MATCHERS})\s*", re.ASCII)
_LABEL_NAME = re.compile(_LABEL, re.ASCII)


def check_selector(selector: str) -> None:
    """Raise :class:`InputError` unless ``selector`` is one plain PromQL series selector."""
    if not selector.strip() or len(selector) > MAX_SELECTOR_CHARS:
        raise InputError(f"--selector must be 1-{MAX_SELECTOR_CHARS} characters")
    if _SELECTOR.fullmatch(selector) is None:
        raise InputError(
            f"--selector must be a series selector such as "
            f"'metric_total{{job=\"minio\"}}' (no function, range, offset or @): "
            f"{shorten(selector, 100)!r}"
        )


def check_label_name(label: str, option: str) -> None:
    """Raise :class:`InputError` unless ``label`` is a Prometheus label name."""
    if _LABEL_NAME.fullmatch(label) is None or label.startswith("__"):
        raise InputError(
            f"{option} must be a label name ([A-Za-z_][A-Za-z0-9_]*, not reserved __*): "
            f"{shorten(label, 100)!r}"
        )
