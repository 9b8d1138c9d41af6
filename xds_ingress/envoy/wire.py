"""Protobuf wire encoding of what is assembled from already serialized pieces."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import NamedTuple


def varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


_SMALL = [bytes((i,)) for i in range(0x80)]


def length_delimited(field_number: int, data: bytes) -> bytes:
    """Protobuf wire encoding of one length-delimited field (string, bytes or message)."""
    return varint((field_number << 3) | 2) + varint(len(data)) + data


class Versioned(NamedTuple):
    """A serialized resource with its version already known (see `split_version`)."""

    body: bytes
    version: str


VERSION_HEX = 16  # the length of a resource version: 8 bytes of SHA-256, in hex (as cache.content_version)
DIGEST_BYTES = 16


def entry_digest(entry: bytes) -> bytes:
    return hashlib.sha256(entry).digest()[:DIGEST_BYTES]


def version_of_pieces(pieces: Iterable[tuple[bool, bytes]]) -> str:
    """`split_version` of a message given in order as (is an entry of the split field, that entry's digest) or
    (False, bytes of other fields)."""
    h = hashlib.sha256()
    for is_entry, data in pieces:
        h.update(b"\0" + data if is_entry else data)
    return h.hexdigest()[:VERSION_HEX]


def split_version(body: bytes, field_number: int) -> str:
    """The version of a serialized message computed from its top-level fields, with each entry of the repeated
    message field `field_number` replaced by its own digest (after a 0 byte, which starts no field): a content
    hash that whoever keeps those entries' digests can compute without hashing the whole (a route configuration
    of megabytes: envoy/routes.py RouteConfigEncoder)."""
    pieces: list[tuple[bool, bytes]] = []
    i, n = 0, len(body)
    while i < n:
        start = i
        key, i = _read_varint(body, i)
        wire_type = key & 7
        if wire_type == 0:
            _, i = _read_varint(body, i)
        elif wire_type == 1:
            i += 8
        elif wire_type == 2:
            length, i = _read_varint(body, i)
            i += length
        elif wire_type == 5:
            i += 4
        else:
            raise ValueError(f"wire type {wire_type} at {start}")
        if i > n:
            raise ValueError("truncated message")
        part = body[start:i]
        is_entry = key >> 3 == field_number and wire_type == 2
        pieces.append((is_entry, entry_digest(part) if is_entry else part))
    return version_of_pieces(pieces)


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(data):
            raise ValueError("truncated varint")
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
