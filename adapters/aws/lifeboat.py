"""The lifeboat in AWS: replicas in S3, the site lease in DynamoDB.

* ``S3ReplicaStore``: one object per instance under ``lifeboat/<site>/instances/`` in the
  replica bucket (``core.lifeboat.replica``); every write is an S3 conditional write
  (``If-None-Match: *`` for a new object, ``If-Match: <ETag>`` otherwise; the same for
  the delete of a finished instance's replica), so the ordering rule holds between the
  site's replicator and a watchdog writing at the same time. The ETag of what this store
  wrote last is remembered, so a replicator's write is one request; a 412 (or 409: a
  concurrent write) reads the object's header and decides again.
* ``DynamoLeaseStore``: one item per site (partition key ``site``) with the lease
  document and a ``version`` number; every write is a ``PutItem`` with a condition on
  that number (``attribute_not_exists(site)`` for the first), so exactly one of two
  racing writers wins.

Errors: what the SDK raises while the cloud cannot be reached (or refuses the
credentials) becomes ``CloudUnreachableError`` with one line saying what was being done.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn

from botocore.exceptions import (  # type: ignore[import-untyped, unused-ignore]
    BotoCoreError,
    ClientError,
)

from rustyflower.adapters.aws.client_errors import error_code
from rustyflower.adapters.aws.deployment import (
    ENV_LEASE_TABLE,
    ENV_REPLICA_BUCKET,
    LEASE_PARTITION_KEY,
)
from rustyflower.core.lifeboat.lease import (
    LeaseConflictError,
    LeaseError,
    SiteLease,
    VersionedLease,
    check_site_id,
)
from rustyflower.core.lifeboat.replica import (
    CloudUnreachableError,
    PutOutcome,
    RemoveOutcome,
    Replica,
    ReplicaHeader,
    instance_name,
    instances_prefix,
    put_decision,
    remove_decision,
    report_name,
)
from rustyflower.core.lifeboat.segments import SegmentedReplicas

__all__ = [
    "ENV_LEASE_TABLE",
    "ENV_REPLICA_BUCKET",
    "LEASE_PARTITION_KEY",
    "DynamoLeaseStore",
    "S3ReplicaStore",
]

_ATTEMPTS = 8
_READERS = 16
_CONFLICT = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})


@contextlib.contextmanager
def _reaching(where: str, doing: str) -> Iterator[None]:
    try:
        yield
    except ClientError as error:
        code = error_code(error)
        if code in (
            "AccessDenied",
            "AccessDeniedException",
            "UnrecognizedClientException",
            "InvalidAccessKeyId",
            "ExpiredToken",
            "SignatureDoesNotMatch",
            "NoSuchBucket",
            "ResourceNotFoundException",
        ):
            _unreachable(where, doing, error)
        raise
    except BotoCoreError as error:
        _unreachable(where, doing, error)


def _unreachable(where: str, doing: str, error: BaseException) -> NoReturn:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    raise CloudUnreachableError(f"AWS {where} while {doing}: {text}") from None


class S3ReplicaStore(SegmentedReplicas):
    """``ReplicaStore`` in one S3 bucket (thread-safe: the replicator ships side by side)."""

    cloud = "aws"

    def __init__(self, s3: Any, bucket: str, site: str) -> None:
        super().__init__()
        self.s3 = s3
        self.bucket = bucket
        self.site = check_site_id(site)
        self._written: dict[str, tuple[str, ReplicaHeader]] = {}
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/lifeboat/{self.site}/"

    # --- writing ----------------------------------------------------------------------

    def put(self, header: ReplicaHeader, data: bytes) -> PutOutcome:
        key = instance_name(self.site, header.instance_id)
        with self._lock:
            known = self._written.get(key)
        with _reaching(self.where, f"writing the replica of {header.instance_id!r}"):
            for _ in range(_ATTEMPTS):
                if known is not None:
                    etag, there = known
                    decision = put_decision(there, header)
                    if decision != "write":
                        return decision
                    condition = {"IfMatch": etag}
                else:
                    condition = {"IfNoneMatch": "*"}
                try:
                    answer = self.s3.put_object(
                        Bucket=self.bucket,
                        Key=key,
                        Body=data,
                        Metadata=header.metadata(),
                        ContentType="application/json",
                        **condition,
                    )
                except ClientError as error:
                    code = error_code(error)
                    if code not in _CONFLICT and code not in _MISSING:
                        raise
                    known = self._head(key)  # someone else wrote (or deleted): look
                    if known is None:
                        continue
                    decision = put_decision(known[1], header)
                    if decision != "write":
                        self._remember(key, known)
                        return decision
                    continue
                self._remember(key, (str(answer["ETag"]), header))
                return "written"
        raise CloudUnreachableError(
            f"AWS {self.where}: gave up writing {header.instance_id!r} after "
            f"{_ATTEMPTS} conflicting writes"
        )

    def remove(self, header: ReplicaHeader) -> RemoveOutcome:
        key = instance_name(self.site, header.instance_id)
        with self._lock:
            known = self._written.get(key)
        with _reaching(self.where, f"removing the replica of {header.instance_id!r}"):
            for _ in range(_ATTEMPTS):
                # what this store wrote last saves a look (a 412 says someone wrote since)
                found = known if known is not None else self._head(key)
                known = None
                decision = remove_decision(None if found is None else found[1], header)
                if decision != "remove" or found is None:
                    if decision == "absent":
                        self._forget(key)
                    return "absent" if decision == "remove" else decision
                try:
                    self.s3.delete_object(Bucket=self.bucket, Key=key, IfMatch=found[0])
                except ClientError as error:
                    code = error_code(error)
                    if code in _MISSING:
                        self._forget(key)
                        return "absent"
                    if code in _CONFLICT:
                        continue
                    raise
                self._forget(key)
                return "removed"
        raise CloudUnreachableError(f"AWS {self.where}: gave up removing {header.instance_id!r}")

    def _remember(self, key: str, found: tuple[str, ReplicaHeader]) -> None:
        with self._lock:
            self._written[key] = found

    def _forget(self, key: str) -> None:
        with self._lock:
            self._written.pop(key, None)

    def _head(self, key: str) -> tuple[str, ReplicaHeader] | None:
        try:
            answer = self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if error_code(error) in _MISSING:
                return None
            raise
        header = ReplicaHeader.from_metadata(
            answer.get("Metadata") or {}, f"s3://{self.bucket}/{key}"
        )
        return str(answer["ETag"]), header

    # --- reading ----------------------------------------------------------------------

    def base_headers(self) -> list[ReplicaHeader]:
        keys = self._list_objects(instances_prefix(self.site))
        with (
            _reaching(self.where, "listing the replicas"),
            ThreadPoolExecutor(max_workers=_READERS) as pool,
        ):
            found = list(pool.map(self._head, keys))
        return [entry[1] for entry in found if entry is not None]

    def read_base(self, instance_id: str) -> Replica | None:
        key = instance_name(self.site, instance_id)
        with _reaching(self.where, f"reading the replica of {instance_id!r}"):
            try:
                answer = self.s3.get_object(Bucket=self.bucket, Key=key)
            except ClientError as error:
                if error_code(error) in _MISSING:
                    return None
                raise
            data = answer["Body"].read()
        header = ReplicaHeader.from_metadata(
            answer.get("Metadata") or {}, f"s3://{self.bucket}/{key}"
        )
        self._remember(key, (str(answer["ETag"]), header))
        return Replica(header, data)

    # --- segments (``core.lifeboat.segments``) ------------------------------------------------

    def _write_object(self, name: str, body: bytes) -> None:
        with _reaching(self.where, f"writing segment {name}"):
            # a segment's name is new: no condition, and a retried request writes the same
            self.s3.put_object(
                Bucket=self.bucket, Key=name, Body=body, ContentType="application/json"
            )

    def _list_objects(self, prefix: str) -> list[str]:
        keys: list[str] = []
        with _reaching(self.where, f"listing {prefix}"):
            paginator = self.s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                keys += [str(item["Key"]) for item in page.get("Contents", [])]
        return keys

    def _read_object(self, name: str) -> bytes | None:
        with _reaching(self.where, f"reading segment {name}"):
            try:
                body: bytes = self.s3.get_object(Bucket=self.bucket, Key=name)["Body"].read()
            except ClientError as error:
                if error_code(error) in _MISSING:
                    return None
                raise
        return body

    def _delete_objects(self, names: Sequence[str]) -> None:
        with _reaching(self.where, "deleting compacted segments"):
            for start in range(0, len(names), 1000):  # DeleteObjects takes 1,000 at most
                chunk = names[start : start + 1000]
                answer = self.s3.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": key} for key in chunk], "Quiet": True},
                )
                failed = answer.get("Errors") or []
                if failed:
                    first = failed[0]
                    raise CloudUnreachableError(
                        f"AWS {self.where}: could not delete {len(failed)} segment(s), "
                        f"first {first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                    )

    def write_report(self, takeover_id: str, body: bytes) -> str:
        key = report_name(self.site, takeover_id)
        with _reaching(self.where, f"writing takeover report {takeover_id}"):
            self.s3.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType="application/json"
            )
        return key

    def read_report(self, name: str) -> bytes:
        with _reaching(self.where, f"reading takeover report {name}"):
            body: bytes = self.s3.get_object(Bucket=self.bucket, Key=name)["Body"].read()
        return body


class DynamoLeaseStore:
    """``LeaseStore`` in one DynamoDB table (partition key ``site``)."""

    cloud = "aws"

    def __init__(self, dynamodb: Any, table: str) -> None:
        self.dynamodb = dynamodb
        self.table = table

    @property
    def where(self) -> str:
        return f"dynamodb:{self.table}"

    def read(self, site: str) -> VersionedLease | None:
        with _reaching(self.where, f"reading the lease of site {site!r}"):
            answer = self.dynamodb.get_item(
                TableName=self.table,
                Key={LEASE_PARTITION_KEY: {"S": site}},
                ConsistentRead=True,
            )
        item = answer.get("Item")
        if not item:
            return None
        try:
            document = json.loads(item["lease"]["S"])
            version = str(item["version"]["N"])
        except (KeyError, ValueError):
            raise LeaseError(
                f"{self.where}: the item of site {site!r} is not a site lease"
            ) from None
        return VersionedLease(SiteLease.from_document(document), version)

    def create(self, lease: SiteLease) -> VersionedLease:
        return self._write(lease, "1", "attribute_not_exists(#site)", {})

    def replace(self, lease: SiteLease, version: str) -> VersionedLease:
        following = str(int(version) + 1)
        return self._write(lease, following, "#version = :seen", {":seen": {"N": version}})

    def _write(
        self, lease: SiteLease, version: str, condition: str, values: dict[str, Any]
    ) -> VersionedLease:
        item = {
            LEASE_PARTITION_KEY: {"S": lease.site},
            "version": {"N": version},
            "lease": {"S": json.dumps(lease.document(), sort_keys=True)},
            # the same facts as plain attributes, for people reading the table
            "holder": {"S": lease.holder},
            "term": {"N": str(lease.term)},
            "renewed_at": {"S": lease.renewed_at},
        }
        names = {"#site": LEASE_PARTITION_KEY, "#version": "version"}
        options: dict[str, Any] = {
            "TableName": self.table,
            "Item": item,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {n: v for n, v in names.items() if n in condition},
        }
        if values:
            options["ExpressionAttributeValues"] = values
        with _reaching(self.where, f"writing the lease of site {lease.site!r}"):
            try:
                self.dynamodb.put_item(**options)
            except ClientError as error:
                if error_code(error) == "ConditionalCheckFailedException":
                    raise LeaseConflictError(
                        f"the lease of site {lease.site!r} changed since it was read"
                    ) from None
                raise
        return VersionedLease(lease, version)
