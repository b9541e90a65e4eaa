"""The CloudWatch dashboard (infra/terraform/aws/observability.tf) shows what the code
publishes: Step Functions' per-machine metrics, the activity function's metrics by flow,
state and activity, the trigger function's counts."""

from __future__ import annotations

import re

from lambda_aws import activity, settings
from tests.aws.test_terraform import TERRAFORM, module_locals, outputs, resource


def test_the_dashboard_reads_the_metrics_the_functions_publish() -> None:
    text = (TERRAFORM / "observability.tf").read_text()
    assert module_locals()["metrics_namespace"] == settings.METRICS_NAMESPACE
    for name in (activity.METRIC_SUCCEEDED, activity.METRIC_FAILED):
        assert name in text
    published = (REPO_ROOT / "lambda_aws" / "triggers.py").read_text()
    for name in re.findall(r'"(Trigger[A-Za-z]+)"', text):
        assert f'"{name}"' in published, name
    dimensions = (REPO_ROOT / "lambda_aws" / "activity.py").read_text()
    for dimension in ("flow", "state", "activity"):
        assert f'add_dimension(name="{dimension}"' in dimensions
        assert dimension in text
    assert "aws_cloudwatch_dashboard.flows" in str(outputs()["dashboard_name"])
    assert resource("aws_cloudwatch_dashboard.flows")["dashboard_name"]


REPO_ROOT = TERRAFORM.parents[2]
