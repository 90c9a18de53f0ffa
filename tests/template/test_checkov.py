"""checkov passes on the template, offline, and every skipped check says why in the template.

Two scans, as `make checkov` runs them: template.yaml as written, and the template as deployed
(Fn::ForEach expanded by SAM CLI, then the SAM transform, with the token parameters set so that
the conditional grants exist). checkov does not expand Fn::ForEach itself, and only the
translated template shows it the role SAM generates for the collector.

Offline: no API key (so nothing is uploaded), --skip-download (no policy metadata from the
platform), CKV_SKIP_PACKAGE_UPDATE_CHECK (no look-up of a newer checkov), and `unshare -n` around
it where the machine allows (tools.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.template import sam_expand
from tests.template.test_alarms import SAMPLE_TOPIC
from tests.template.test_schedules import SAMPLE_KEY, SAMPLE_PARAMETER, SAMPLE_SECRET
from tests.template.tools import TEMPLATE, checkov, run

CHECKOV_FLAGS = ["--framework", "cloudformation", "--skip-download", "--output", "json"]
DEPLOYED_PARAMETERS = {
    "SourceIds": "node-a,node_b",
    "ExporterTokenSecretArns": SAMPLE_SECRET,
    "ExporterTokenParameterArns": SAMPLE_PARAMETER,
    "ExporterTokenKmsKeyArns": SAMPLE_KEY,
    "AlarmTopicArn": SAMPLE_TOPIC,
}
MIN_COMMENT = 40  # characters: a reason, not "n/a"


def _scan(path: Path, env: dict[str, str]) -> dict[str, Any]:
    proc = run([checkov(), "--file", path, *CHECKOV_FLAGS], env)
    assert proc.returncode in (0, 1), f"checkov crashed:\n{proc.stdout}\n{proc.stderr}"
    report = json.loads(proc.stdout)
    if isinstance(report, list):  # one report per framework
        (report,) = [r for r in report if r.get("check_type") == "cloudformation"]
    assert report["check_type"] == "cloudformation"
    return dict(report)


def _failures(report: dict[str, Any]) -> list[str]:
    return [
        f"{c['check_id']} {c['resource']}: {c['check_name']}"
        for c in report["results"]["failed_checks"]
    ]


def _skips_in(resources: dict[str, Any]) -> dict[tuple[str, str], str]:
    """{(logical id, check id): comment} of every Metadata.checkov.skip entry."""
    skips = {}
    for name, res in resources.items():
        if name.startswith("Fn::ForEach::"):
            _, _, body = res
            skips.update(_skips_in(body))
            continue
        for entry in res.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert set(entry) == {"id", "comment"}, f"{name}: {entry}"
            skips[(name, entry["id"])] = entry["comment"]
    return skips


@pytest.fixture(scope="module")
def deployed_template(
    sam_template: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    translated = sam_expand.translate(
        sam_expand.expand(sam_template, DEPLOYED_PARAMETERS), DEPLOYED_PARAMETERS
    )
    path = tmp_path_factory.mktemp("checkov") / "deployed.json"
    path.write_text(json.dumps(translated, indent=2))
    return path


@pytest.fixture(scope="module")
def written_report(tool_env: dict[str, str]) -> dict[str, Any]:
    return _scan(TEMPLATE, tool_env)


@pytest.fixture(scope="module")
def deployed_report(tool_env: dict[str, str], deployed_template: Path) -> dict[str, Any]:
    return _scan(deployed_template, tool_env)


def test_checkov_passes_on_the_template_as_written(written_report: dict[str, Any]) -> None:
    assert written_report["summary"]["parsing_errors"] == 0
    assert not _failures(written_report)


def test_checkov_passes_on_the_template_as_deployed(
    deployed_report: dict[str, Any], deployed_template: Path
) -> None:
    summary = deployed_report["summary"]
    assert summary["parsing_errors"] == 0
    assert not _failures(deployed_report)
    # It saw everything: both schedules and lag alarms, and the roles SAM generates.
    resources = json.loads(deployed_template.read_text())["Resources"]
    assert {
        "CollectorSchedulenodea", "CollectorSchedulenodeb", "LagAlarmnodea", "LagAlarmnodeb",
        "QuarantineAlarmnodea", "QuarantineAlarmnodeb", "ApiErrorsAlarm", "ApiThrottlesAlarm",
        "CollectorFunctionRole", "DriftCheckFunctionRole", "DriftCheckSchedule",
        "AuditFunctionRole", "AuditSchedule", "AuditDifferencesAlarm", "AuditHeartbeatAlarm",
        "SinkFunctionRole", "SinkStreamMapping", "SinkBackfillSchedule", "SinkFailureQueue",
    } <= set(resources)
    assert summary["resource_count"] == len(resources)
    scanned = {c["resource"] for c in deployed_report["results"]["passed_checks"]}
    assert "AWS::IAM::Role.CollectorFunctionRole" in scanned
    assert "AWS::IAM::Role.SchedulerRole" in scanned
    assert "AWS::IAM::Role.DriftCheckSchedulerRole" in scanned
    assert "AWS::IAM::Role.DriftCheckFunctionRole" in scanned
    assert "AWS::IAM::Role.AuditFunctionRole" in scanned
    assert "AWS::IAM::Role.AuditSchedulerRole" in scanned
    assert "AWS::IAM::Role.SinkFunctionRole" in scanned
    assert "AWS::IAM::Role.SinkBackfillSchedulerRole" in scanned


def test_every_skip_says_why(template: dict[str, Any]) -> None:
    skips = _skips_in(template["Resources"])
    assert skips, "no skips at all: then this test and docs/build.md's list are stale"
    for (name, check), comment in skips.items():
        assert check.startswith(("CKV_AWS_", "CKV2_AWS_")), f"{name}: {check}"
        assert isinstance(comment, str) and len(comment.strip()) >= MIN_COMMENT, (
            f"{name} skips {check} without a written reason"
        )


def test_every_skip_is_used(
    template: dict[str, Any], written_report: dict[str, Any], deployed_report: dict[str, Any]
) -> None:
    """A skip that no scan applies is stale or mistyped (e.g. the check was fixed): remove it."""
    applied = {
        (c["resource"].split(".", 1)[1], c["check_id"])
        for report in (written_report, deployed_report)
        for c in report["results"]["skipped_checks"]
    }
    assert set(_skips_in(template["Resources"])) == applied

