"""The Powertools logger, metrics and tracer every RustyFlower function shares.

Service ``rustyflower`` and namespace ``RustyFlower`` unless ``POWERTOOLS_SERVICE_NAME`` /
``POWERTOOLS_METRICS_NAMESPACE`` say otherwise. Outside Lambda the tracer is disabled by
Powertools itself, and metrics are printed as EMF lines (tests may ignore them).
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from lambda_aws.settings import METRICS_NAMESPACE, SERVICE

_service = os.environ.get("POWERTOOLS_SERVICE_NAME") or SERVICE

logger = Logger(service=_service)
metrics = Metrics(
    namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or METRICS_NAMESPACE,
    service=_service,
)
tracer = Tracer(service=_service)

__all__ = ["MetricUnit", "logger", "metrics", "tracer"]
