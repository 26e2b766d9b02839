"""Data-only messages from the sandbox to the parent: JSON plus raw byte blobs, never a pickle.

Why: whatever comes out of the sandbox may have been written by the program it ran, so the parent
must decode it without running any code the sender chose. `pickle.loads` runs code by design
(`__reduce__`); `json.loads` and slicing bytes do not. A message is

    [4-byte big-endian header length][header: UTF-8 JSON][blob 0][blob 1]...

where the header is {"value": <JSON tree>, "blobs": [size, ...]}. In the tree, `bytes` become
{"$b": i} (blob i), tuples {"$t": [...]}, and data records (mathjax_vl.data.records) {"$r": dict};
`decode` rebuilds records with `record_from_dict`, which validates every field. Anything else
(an unknown tag, a blob index out of range, trailing bytes, a size over the limit) is a
`WireError`.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from mathjax_vl.data import records as R

_HEADER = struct.Struct(">I")
_TAGS = ("$b", "$t", "$r")


class WireError(ValueError):
    """A message from the sandbox that does not decode as data (tampered or truncated)."""


def encode(value: Any) -> bytes:
    """`value` (None, bool, int, float, str, bytes, list, tuple, str-keyed dict, records)."""
    blobs: list[bytes] = []

    def tree(v: Any) -> Any:
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, (bytes, bytearray, memoryview)):
            blobs.append(bytes(v))
            return {"$b": len(blobs) - 1}
        if isinstance(v, list):
            return [tree(x) for x in v]
        if isinstance(v, tuple):
            return {"$t": [tree(x) for x in v]}
        if isinstance(v, dict):
            out = {}
            for key, x in v.items():
                if not isinstance(key, str) or key in _TAGS:
                    raise TypeError(f"wire: dict key {key!r} is not an untagged str")
                out[key] = tree(x)
            return out
        if isinstance(v, tuple(R.RECORD_TYPES.values())):
            return {"$r": tree(R.record_to_dict(v))}
        if hasattr(v, "item") and getattr(v, "shape", None) == ():  # a numpy scalar
            return tree(v.item())
        raise TypeError(f"wire: cannot send a {type(v).__name__} out of the sandbox")

    header = json.dumps({"value": tree(value), "blobs": [len(b) for b in blobs]}).encode()
    return b"".join([_HEADER.pack(len(header)), header, *blobs])


def decode(data: bytes, max_bytes: int) -> Any:
    """The value `encode` sent; WireError for anything that is not exactly such a message."""
    if len(data) > max_bytes:
        raise WireError(f"message of {len(data)} bytes exceeds the limit of {max_bytes}")
    if len(data) < _HEADER.size:
        raise WireError(f"truncated message ({len(data)} bytes)")
    (size,) = _HEADER.unpack_from(data)
    if _HEADER.size + size > len(data):
        raise WireError("header runs past the end of the message")
    try:
        header = json.loads(data[_HEADER.size : _HEADER.size + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"header is not JSON ({exc})") from None
    sizes = header.get("blobs") if isinstance(header, dict) else None
    if (
        set(header) != {"value", "blobs"}
        or not isinstance(sizes, list)
        or not all(type(n) is int and n >= 0 for n in sizes)
    ):
        raise WireError("header is not {'value', 'blobs'}")
    offset = _HEADER.size + size
    if offset + sum(sizes) != len(data):
        raise WireError(f"blob sizes {sum(sizes)} do not match the {len(data) - offset} bytes sent")
    blobs = []
    for n in sizes:
        blobs.append(data[offset : offset + n])
        offset += n

    def value(t: Any) -> Any:
        if isinstance(t, list):
            return [value(x) for x in t]
        if not isinstance(t, dict):
            return t
        tags = [k for k in _TAGS if k in t]
        if not tags:
            return {k: value(x) for k, x in t.items()}
        if len(t) != 1:
            raise WireError(f"tagged object with extra keys {sorted(t)}")
        (tag,) = tags
        if tag == "$b":
            i = t[tag]
            if type(i) is not int or not 0 <= i < len(blobs):
                raise WireError(f"blob reference {i!r} out of range")
            return blobs[i]
        if tag == "$t":
            if not isinstance(t[tag], list):
                raise WireError("tuple tag without a list")
            return tuple(value(x) for x in t[tag])
        if not isinstance(t[tag], dict):
            raise WireError("record tag without a dict")
        try:
            return R.record_from_dict(value(t[tag]), "<sandbox message>")
        except R.RecordError as exc:
            raise WireError(f"invalid record: {exc}") from None

    return value(header["value"])
