"""botocore's errors, typed once: ``ClientError`` and the code it carries."""

from __future__ import annotations

from botocore.exceptions import ClientError  # type: ignore[import-untyped, unused-ignore]

__all__ = ["ClientError", "error_code"]


def error_code(error: BaseException) -> str:
    """The AWS error code of a botocore ``ClientError`` (``""`` for anything else)."""
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return ""
