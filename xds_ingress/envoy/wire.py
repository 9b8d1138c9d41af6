"""Protobuf wire encoding of what is assembled from already serialized pieces."""

from __future__ import annotations


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
