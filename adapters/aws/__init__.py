"""AWS Step Functions runtime: compile flows to ASL, continue snapshots as executions."""

from rustyflower.adapters.aws.compiler import compile_flow, compile_to_json, machine_comment
from rustyflower.adapters.aws.errors import CompileError, DigestMismatchError, ResumeError
from rustyflower.adapters.aws.resume import (
    check_digest,
    deployed_digest,
    execution_input,
    execution_name,
    fresh_input,
)
from rustyflower.adapters.aws.services import AwsServiceBindings

__all__ = [
    "AwsServiceBindings",
    "CompileError",
    "DigestMismatchError",
    "ResumeError",
    "check_digest",
    "compile_flow",
    "compile_to_json",
    "deployed_digest",
    "execution_input",
    "execution_name",
    "fresh_input",
    "machine_comment",
]
