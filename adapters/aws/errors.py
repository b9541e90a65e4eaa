"""Errors of the AWS adapter: a flow that cannot be compiled, a snapshot that cannot continue."""

from __future__ import annotations

from rustyflower.core.errors import RustyFlowerError


class AwsAdapterError(RustyFlowerError):
    """Base class of the AWS adapter's errors."""


class CompileError(AwsAdapterError, ValueError):
    """A flow definition cannot be compiled to Amazon States Language.

    The message names the state (``state 'Ship': ...``) or the flow (``flow 'order': ...``).
    """


class ResumeError(AwsAdapterError, ValueError):
    """A snapshot cannot be turned into the input of a Step Functions execution."""


class DigestMismatchError(AwsAdapterError, ValueError):
    """The snapshot was taken from another definition than the deployed state machine's."""

    def __init__(self, flow: str, snapshot_digest: str, deployed_digest: str | None) -> None:
        self.flow = flow
        self.snapshot_digest = snapshot_digest
        self.deployed_digest = deployed_digest
        deployed = deployed_digest or "no RustyFlower digest"
        super().__init__(
            f"flow {flow!r}: the snapshot's definition digest is {snapshot_digest}, but the "
            f"deployed state machine was compiled from {deployed}; deploy the machine compiled "
            "from the snapshot's definition (or migrate the snapshot) before continuing it in AWS"
        )
