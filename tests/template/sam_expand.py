"""template.yaml as it will be deployed: Fn::ForEach expanded, then the SAM transform applied.

Both steps are the tools' own code, run offline:

- :func:`expand` is SAM CLI's AWS::LanguageExtensions expansion
  (``samcli.lib.cfn_language_extensions``), the one ``sam build`` runs when
  ``language_extensions = true`` (samconfig.toml). Parameter values (``SourceIds``, ...) are
  resolved the way ``--parameter-overrides`` resolves them; the rest keep their defaults, and the
  pseudo parameters get sample values (:data:`PSEUDO_PARAMETERS`).
- :func:`translate` is the SAM translator (``samtranslator``, the AWS::Serverless transform) on the
  expanded template. Local ``CodeUri``/``ContentUri`` become placeholder S3 URIs and no managed
  policy is looked up, so nothing talks to AWS.

Used by the template tests, and by ``make checkov`` to scan the expanded template (checkov does not
expand Fn::ForEach itself)::

    python -m tests.template.sam_expand [--parameter KEY=VALUE ...] template.yaml > expanded.json
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REGION = "us-east-1"
# What SAM CLI's expansion substitutes for the pseudo parameters. Without them it leaves
# `${AWS::StackName}` as literal text where it resolved an Fn::Sub (`sam build` does the same:
# harmless there, as CloudFormation gets the template unexpanded, but misleading in a scan).
PSEUDO_PARAMETERS = {
    "AWS::StackName": "minutemeter",
    "AWS::Region": REGION,
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
}
_CODE_PROPERTIES = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
}


def load(path: Path) -> dict[str, Any]:
    """The template as SAM CLI reads it (short-form intrinsics become their long form)."""
    from samcli.yamlhelper import yaml_parse

    template = yaml_parse(path.read_text())
    assert isinstance(template, dict), f"{path} is not a template"
    return template


def expand(
    template: Mapping[str, Any], parameters: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The template with Fn::ForEach (and the other language extensions) expanded by SAM CLI.

    Raises SAM CLI's ``InvalidSamDocumentException`` where ``sam build`` would fail, e.g. for two
    source ids whose logical ids collide.
    """
    from samcli.lib.cfn_language_extensions.sam_integration import expand_language_extensions

    result = expand_language_extensions(
        copy.deepcopy(dict(template)),
        parameter_values={**PSEUDO_PARAMETERS, **(parameters or {})},
        enabled=True,
    )
    assert result.had_language_extensions, "template.yaml does not use AWS::LanguageExtensions"
    return copy.deepcopy(result.expanded_template)


def translate(
    expanded: Mapping[str, Any], parameters: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The CloudFormation template that the AWS::Serverless transform makes of ``expanded``."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    template = copy.deepcopy(dict(expanded))
    for name, resource in template.get("Resources", {}).items():
        prop = _CODE_PROPERTIES.get(resource.get("Type", ""))
        if prop and isinstance(resource.get("Properties", {}).get(prop), str):
            resource["Properties"][prop] = f"s3://placeholder-bucket/{name}.zip"
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=REGION))
    translated = translator.translate(
        template, parameter_values=dict(parameters or {}), get_managed_policy_map=dict
    )
    return dict(translated)


def _parameters(pairs: Sequence[str]) -> dict[str, str]:
    parameters = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--parameter takes KEY=VALUE, not {pair!r}")
        parameters[key] = value
    return parameters


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("template", type=Path)
    parser.add_argument("--parameter", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--translate", action="store_true", help="also apply the SAM transform (else expand only)"
    )
    args = parser.parse_args(argv)
    parameters = _parameters(args.parameter)
    result = expand(load(args.template), parameters)
    if args.translate:
        result = translate(result, parameters)
    json.dump(result, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
