"""Token secret references: which AWS service holds an exporter's token, from its reference."""

from __future__ import annotations

import re

from minutemeter.domain.errors import ConfigError

_SECRET_ARN = re.compile(r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+", re.ASCII)
_PARAMETER_ARN = re.compile(r"arn:aws[a-z-]*:ssm:[a-z0-9-]+:\d{12}:parameter/.+", re.ASCII)
_PARAMETER_NAME = re.compile(r"ssm:([A-Za-z0-9_.\-/]+)", re.ASCII)
REFERENCE_HELP = (
    "a token secret must be a Secrets Manager ARN, an SSM parameter ARN, or ssm:/parameter-name"
)


def classify_reference(reference: str) -> tuple[str, str]:
    """``("secretsmanager", arn)`` or ``("ssm", name or ARN)``; raises :class:`ConfigError`.

    GetParameter takes a parameter ARN as its name, which also keeps the difference between
    ``/x`` (hierarchical) and ``x`` that the ARN form cannot show.
    """
    if _SECRET_ARN.fullmatch(reference):
        return "secretsmanager", reference
    if _PARAMETER_ARN.fullmatch(reference):
        return "ssm", reference
    match = _PARAMETER_NAME.fullmatch(reference)
    if match:
        return "ssm", match.group(1)
    raise ConfigError(REFERENCE_HELP)
