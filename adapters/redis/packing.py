"""Packing commands for the wire: straight to hiredis, as redis-py up to 7.x did.

redis-py 8 encodes every argument of every command in Python (its ``Encoder.encode`` and
an ``isinstance`` scan per argument) before handing them to ``hiredis.pack_command``. A
commit is one ``EVALSHA`` of some 40-70 arguments, so that became most of the cost of
sending it: 69 us to pack a typical commit with redis-py 8.2, 14-18 us with 5.2-7.0, on
the bench machine (bench/README.md, "What it costs now").

``FastPacker`` is given to redis-py through its documented connection argument
``command_packer`` (``Connection(command_packer=...)``). For the arguments this runner
sends (``str``, ``bytes``, ``int``) hiredis produces the same bytes as redis-py's default
encoder: UTF-8 text, strict errors, ``int`` as its decimal ``repr``. Anything else (a
float, a memoryview, a bool, which redis-py refuses) goes to redis-py's own serializer,
so its behaviour, errors included, is unchanged.
"""

from __future__ import annotations

from typing import Any

from redis._parsers import Encoder
from redis.connection import PythonRespSerializer
from redis.utils import HIREDIS_AVAILABLE

if HIREDIS_AVAILABLE:
    import hiredis

_PLAIN = frozenset({str, bytes, int})
"""The types hiredis packs exactly as redis-py's default encoder does (``type`` is
checked, not ``isinstance``: a ``bool`` is an ``int`` that redis-py refuses)."""

_BUFFER_CUTOFF = 6000
"""redis-py's own cutoff for the fallback serializer (``Connection._buffer_cutoff``)."""


class FastPacker:
    """A ``command_packer`` for connections with redis-py's default encoding (UTF-8,
    strict errors); see ``packer_options``."""

    def __init__(self) -> None:
        encoder = Encoder("utf-8", "strict", False)  # type: ignore[no-untyped-call]
        self._fallback: Any = PythonRespSerializer(_BUFFER_CUTOFF, encoder.encode)

    def pack(self, *args: Any) -> list[bytes]:
        if not _PLAIN.issuperset(map(type, args)):
            packed: list[bytes] = self._fallback.pack(*args)
            return packed
        name = args[0]
        # redis-py splits a command name given with its subcommand ('CONFIG GET')
        head = tuple(name.encode().split()) if isinstance(name, str) else tuple(name.split())
        plain: Any = head + args[1:]  # str, bytes and int only (checked above)
        return [hiredis.pack_command(plain)]


def packer_options(options: dict[str, Any]) -> dict[str, Any]:
    """The connection options with ``command_packer`` added when it packs exactly as the
    default would: hiredis present, default encoding, no packer chosen by the caller."""
    default_encoding = options.get("encoding", "utf-8").lower().replace("_", "-") in (
        "utf-8",
        "utf8",
    )
    if (
        not HIREDIS_AVAILABLE
        or "command_packer" in options
        or not default_encoding
        or options.get("encoding_errors", "strict") != "strict"
    ):
        return options
    return {**options, "command_packer": FastPacker()}
