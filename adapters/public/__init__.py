"""RustyFlower: durable workflows that run on your servers and continue in the cloud.

This is the public face: what ``__all__`` lists here, plus the modules

* ``rustyflower.client``: the Redis runner from Python (``Client``, ``InstanceHandle``);
* ``rustyflower.worker``: run a worker, and the zero-config embedded server, in-process;
* ``rustyflower.testing``: the test kit (the in-process runtime on a virtual clock);

and the ``rustyflower`` command. Everything else (``rustyflower.core``,
``rustyflower.adapters`` and any ``_name`` module) is internal: it changes between
releases without notice, so import nothing from it. README.md, "Public API", lists what
is public and why.

This module imports ``rustyflower.core`` and the standard library only, never redis,
boto3 or azure: the Lambda zip and the Function App vendor it with core and one cloud
adapter (``rustyflower.adapters.vendoring``), and tests/unit/test_public_face.py keeps
it so.
"""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version

from rustyflower.core.activities import (
    ActivityContext,
    ActivityRegistry,
    activity,
    current_call,
)
from rustyflower.core.builder import (
    Catch,
    Flow,
    Retry,
    Schedule,
    Steps,
    all_of,
    any_of,
    not_,
    ref,
    var,
    when,
)
from rustyflower.core.engine import Snapshot
from rustyflower.core.errors import (
    DefinitionError,
    EpochConflictError,
    EventRejectedError,
    InstanceFinishedError,
    NoWaiterError,
    Problem,
    RustyFlowerError,
    SignatureInvalidError,
    SignatureMissingError,
    SnapshotError,
    UnknownActivityError,
)
from rustyflower.core.model import (
    FlowDefinition,
    definition_schema,
    dump_definition,
    load_definition,
    validate_definition,
)
from rustyflower.core.snapshot import (
    EncryptionKey,
    SigningKey,
    SnapshotKeys,
    generate_encryption_key,
    generate_signing_key,
)
from rustyflower.core.snapshot.document import decode_snapshot, encode_snapshot

try:
    __version__ = version("rustyflower")
except PackageNotFoundError:  # pragma: no cover - vendored into a deployable without metadata
    __version__ = "0+unknown"


def read_definition(path: str | os.PathLike[str]) -> FlowDefinition:
    """Read and validate a flow definition file (``.yaml``, ``.yml`` or ``.json``).

    Raises ``DefinitionError`` listing every problem (text that is not UTF-8 is one), and
    the usual ``OSError`` (``FileNotFoundError``, ...) when the file cannot be read.
    """
    source = os.fspath(path)
    with open(source, "rb") as file:
        raw = file.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        where = f"byte {error.start}"
        raise DefinitionError([Problem(where, "the file is not UTF-8 text")], source) from None
    return load_definition(text, source=source)


__all__ = [
    "ActivityContext",
    "ActivityRegistry",
    "Catch",
    "DefinitionError",
    "EncryptionKey",
    "EpochConflictError",
    "EventRejectedError",
    "Flow",
    "FlowDefinition",
    "InstanceFinishedError",
    "NoWaiterError",
    "Problem",
    "Retry",
    "RustyFlowerError",
    "Schedule",
    "SignatureInvalidError",
    "SignatureMissingError",
    "SigningKey",
    "Snapshot",
    "SnapshotError",
    "SnapshotKeys",
    "Steps",
    "UnknownActivityError",
    "__version__",
    "activity",
    "all_of",
    "any_of",
    "current_call",
    "decode_snapshot",
    "definition_schema",
    "dump_definition",
    "encode_snapshot",
    "generate_encryption_key",
    "generate_signing_key",
    "load_definition",
    "not_",
    "read_definition",
    "ref",
    "validate_definition",
    "var",
    "when",
]
