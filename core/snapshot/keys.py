"""Keys that sign and encrypt snapshots, and how a runtime configures them.

Several keys of each kind may be configured at once so that keys can be rotated: a
snapshot is verified (or decrypted) with whichever configured key its ``key_id``
names, and new snapshots are signed (or encrypted) with the *active* key. Rotating is
then: add the new key as active, keep the old one until no snapshot still names it.

Nothing here reads the process environment: ``SnapshotKeys.from_env`` takes the
mapping to read, so callers decide where configuration comes from.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from rustyflower.core.settings import setting_switch

MIN_SIGNING_SECRET_BYTES = 32
ENCRYPTION_KEY_BYTES = 32  # AES-256

ENV_SIGNING_KEYS = "RUSTYFLOWER_SIGNING_KEYS"
ENV_ENCRYPTION_KEYS = "RUSTYFLOWER_ENCRYPTION_KEYS"
ENV_REQUIRE_SIGNATURE = "RUSTYFLOWER_REQUIRE_SIGNATURE"

_FORBIDDEN_IN_KEY_ID = frozenset(",:")


def _check_key_id(key_id: object) -> None:
    if not isinstance(key_id, str) or not key_id:
        raise ValueError(f"key id must be a non-empty string, got {key_id!r}")
    if any(ch in _FORBIDDEN_IN_KEY_ID or ch.isspace() for ch in key_id):
        raise ValueError(f"key id {key_id!r} must not contain ',', ':' or whitespace")


def _decode_base64(key_id: str, text: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        # Never echo the text: it is (meant to be) a secret.
        raise ValueError(f"key {key_id!r}: secret is not valid standard base64") from None


@dataclass(frozen=True, repr=False)
class SigningKey:
    """An HMAC-SHA256 key; ``secret`` is at least 32 bytes."""

    key_id: str
    secret: bytes

    def __post_init__(self) -> None:
        _check_key_id(self.key_id)
        if not isinstance(self.secret, bytes):
            raise TypeError(f"signing key {self.key_id!r}: secret must be bytes")
        if len(self.secret) < MIN_SIGNING_SECRET_BYTES:
            raise ValueError(
                f"signing key {self.key_id!r}: secret is {len(self.secret)} bytes, "
                f"at least {MIN_SIGNING_SECRET_BYTES} are required"
            )

    @classmethod
    def from_base64(cls, key_id: str, text: str) -> SigningKey:
        """A key from its base64 (standard alphabet, padded) secret."""
        _check_key_id(key_id)
        return cls(key_id, _decode_base64(key_id, text))

    def to_base64(self) -> str:
        """The secret in base64, as ``from_base64`` and ``from_env`` read it."""
        return base64.b64encode(self.secret).decode("ascii")

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id!r}, secret=<{len(self.secret)} bytes hidden>)"


@dataclass(frozen=True, repr=False)
class EncryptionKey:
    """An AES-256-GCM key: exactly 32 bytes."""

    key_id: str
    key: bytes

    def __post_init__(self) -> None:
        _check_key_id(self.key_id)
        if not isinstance(self.key, bytes):
            raise TypeError(f"encryption key {self.key_id!r}: key must be bytes")
        if len(self.key) != ENCRYPTION_KEY_BYTES:
            raise ValueError(
                f"encryption key {self.key_id!r}: key is {len(self.key)} bytes, "
                f"AES-256 needs exactly {ENCRYPTION_KEY_BYTES}"
            )

    @classmethod
    def from_base64(cls, key_id: str, text: str) -> EncryptionKey:
        """A key from its base64 (standard alphabet, padded) form."""
        _check_key_id(key_id)
        return cls(key_id, _decode_base64(key_id, text))

    def to_base64(self) -> str:
        """The key in base64, as ``from_base64`` and ``from_env`` read it."""
        return base64.b64encode(self.key).decode("ascii")

    def __repr__(self) -> str:
        return f"EncryptionKey(key_id={self.key_id!r}, key=<{len(self.key)} bytes hidden>)"


def generate_signing_key(key_id: str) -> SigningKey:
    """A new random signing key (32 bytes from the OS CSPRNG)."""
    return SigningKey(key_id, secrets.token_bytes(MIN_SIGNING_SECRET_BYTES))


def generate_encryption_key(key_id: str) -> EncryptionKey:
    """A new random AES-256 key (from the OS CSPRNG)."""
    return EncryptionKey(key_id, secrets.token_bytes(ENCRYPTION_KEY_BYTES))


_K = TypeVar("_K", SigningKey, EncryptionKey)


def _freeze(kind: str, keys: Mapping[str, _K], expected: type[_K]) -> Mapping[str, _K]:
    frozen: dict[str, _K] = {}
    for key_id, key in keys.items():
        if not isinstance(key, expected):
            raise TypeError(f"{kind} key {key_id!r} must be a {expected.__name__}")
        if key.key_id != key_id:
            raise ValueError(f"{kind} key registered as {key_id!r} has key_id {key.key_id!r}")
        frozen[key_id] = key
    return MappingProxyType(frozen)


def _by_id(kind: str, keys: Iterable[_K]) -> dict[str, _K]:
    out: dict[str, _K] = {}
    for key in keys:
        if key.key_id in out:
            raise ValueError(f"{kind} key id {key.key_id!r} is configured twice")
        out[key.key_id] = key
    return out


@dataclass(frozen=True)
class SnapshotKeys:
    """The signing and encryption configuration of a runtime.

    ``signing`` and ``encryption`` map key ids to keys; any of them verifies or
    decrypts. The active ids (``None``: do not sign / do not encrypt) choose the key
    used when writing. With ``require_signature`` an unsigned snapshot is refused.
    """

    signing: Mapping[str, SigningKey] = field(default_factory=dict)
    active_signing_key_id: str | None = None
    encryption: Mapping[str, EncryptionKey] = field(default_factory=dict)
    active_encryption_key_id: str | None = None
    require_signature: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "signing", _freeze("signing", self.signing, SigningKey))
        object.__setattr__(
            self, "encryption", _freeze("encryption", self.encryption, EncryptionKey)
        )
        active_signing = self.active_signing_key_id
        if active_signing is not None and active_signing not in self.signing:
            raise ValueError(f"active signing key {active_signing!r} is not configured")
        active_encryption = self.active_encryption_key_id
        if active_encryption is not None and active_encryption not in self.encryption:
            raise ValueError(f"active encryption key {active_encryption!r} is not configured")
        if self.require_signature and not self.signing:
            raise ValueError(
                "signatures are required but no signing key is configured: "
                "every snapshot would be refused"
            )

    @property
    def active_signing_key(self) -> SigningKey | None:
        """The key new snapshots are signed with, if any."""
        key_id = self.active_signing_key_id
        return None if key_id is None else self.signing[key_id]

    @property
    def active_encryption_key(self) -> EncryptionKey | None:
        """The key new snapshots' state is encrypted with, if any."""
        key_id = self.active_encryption_key_id
        return None if key_id is None else self.encryption[key_id]

    @classmethod
    def none(cls) -> SnapshotKeys:
        """No signing, no encryption, unsigned snapshots accepted."""
        return cls()

    @classmethod
    def signing_only(cls, key: SigningKey, require: bool = True) -> SnapshotKeys:
        """Sign with ``key`` (and verify with it); no encryption."""
        return cls(
            signing={key.key_id: key},
            active_signing_key_id=key.key_id,
            require_signature=require,
        )

    @classmethod
    def from_keys(
        cls,
        signing: Iterable[SigningKey] = (),
        encryption: Iterable[EncryptionKey] = (),
        require_signature: bool | None = None,
    ) -> SnapshotKeys:
        """Keys from lists; the first key of each list is the active one.

        ``require_signature`` defaults to true when there is a signing key.
        """
        signing_by_id = _by_id("signing", signing)
        encryption_by_id = _by_id("encryption", encryption)
        if require_signature is None:
            require_signature = bool(signing_by_id)
        return cls(
            signing=signing_by_id,
            active_signing_key_id=next(iter(signing_by_id), None),
            encryption=encryption_by_id,
            active_encryption_key_id=next(iter(encryption_by_id), None),
            require_signature=require_signature,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> SnapshotKeys:
        """Keys from environment-style settings (the mapping is passed in).

        - ``RUSTYFLOWER_SIGNING_KEYS``: ``keyid:base64secret`` entries separated by
          commas; the first one signs, all of them verify.
        - ``RUSTYFLOWER_ENCRYPTION_KEYS``: the same form, 32-byte AES keys.
        - ``RUSTYFLOWER_REQUIRE_SIGNATURE``: ``1``/``true``/``yes``/``on`` or
          ``0``/``false``/``no``/``off``; when unset, true if signing keys are set.

        Raises ``ValueError`` naming the variable and entry (never the secret).
        """
        signing = _parse_key_list(environ, ENV_SIGNING_KEYS, SigningKey.from_base64)
        encryption = _parse_key_list(environ, ENV_ENCRYPTION_KEYS, EncryptionKey.from_base64)
        require = setting_switch(environ, ENV_REQUIRE_SIGNATURE)
        try:
            return cls.from_keys(signing, encryption, require)
        except ValueError as exc:
            raise ValueError(f"snapshot key settings: {exc}") from None


def _parse_key_list(
    environ: Mapping[str, str], name: str, factory: Callable[[str, str], _K]
) -> list[_K]:
    raw = environ.get(name, "").strip()
    if not raw:
        return []
    keys: list[_K] = []
    seen: set[str] = set()
    for index, raw_entry in enumerate(raw.split(","), start=1):
        entry = raw_entry.strip()
        key_id, sep, secret = entry.partition(":")
        key_id = key_id.strip()
        if not entry or not sep or not key_id:
            raise ValueError(f"{name}: entry {index} is not of the form keyid:base64secret")
        if key_id in seen:
            raise ValueError(f"{name}: key id {key_id!r} appears twice")
        seen.add(key_id)
        try:
            keys.append(factory(key_id, secret))
        except ValueError as exc:
            raise ValueError(f"{name}: entry {index}: {exc}") from None
    return keys
