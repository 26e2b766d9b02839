"""The sandbox's data-only message format: round trips, and every malformed message refused."""

import json
import pickle

import pytest

from mathjax_vl.data import records as R
from mathjax_vl.datagen import wire

PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)


def test_values_round_trip_with_bytes_tuples_and_records():
    record = R.ImageCaption(id="a", image=PNG, caption="a triangle")
    value = {"png": PNG, "t": (1, 2.5, None, True), "rs": [record], "s": "x", "n": 2**70}
    back = wire.decode(wire.encode(value), 1 << 20)
    assert back == value and isinstance(back["t"], tuple) and back["rs"][0] == record


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.parametrize(
    "data",
    [
        pickle.dumps(Evil()),  # a pickle is not a message, whatever its length prefix says
        len(pickle.dumps(Evil())).to_bytes(4, "big") + pickle.dumps(Evil()),
        wire.encode({"a": 1}) + b"trailing",
        wire.encode({"a": b"xy"})[:-1],  # truncated blob
        b"\x00\x00",  # shorter than the header length
    ],
)
def test_malformed_messages_are_wire_errors(data, capsys):
    with pytest.raises(wire.WireError):
        wire.decode(data, 1 << 20)
    assert "pwned" not in capsys.readouterr().out


def _forged(tree, blobs=()):
    header = json.dumps({"value": tree, "blobs": [len(b) for b in blobs]}).encode()
    return len(header).to_bytes(4, "big") + header + b"".join(blobs)


@pytest.mark.parametrize(
    "tree, match",
    [
        ({"$b": 3}, "out of range"),
        ({"$b": 0, "x": 1}, "extra keys"),
        ({"$t": "no list"}, "tuple"),
        (
            {"$r": {"kind": "image_caption", "id": "a", "image": "not bytes", "caption": "c"}},
            "record",
        ),
        ({"$r": {"kind": "no_such_kind"}}, "record"),
    ],
)
def test_forged_trees_are_refused(tree, match):
    with pytest.raises(wire.WireError, match=match):
        wire.decode(_forged(tree), 1 << 20)


def test_size_limit_and_unsendable_values():
    with pytest.raises(wire.WireError, match="exceeds"):
        wire.decode(wire.encode(bytes(100)), 50)
    with pytest.raises(TypeError, match="cannot send"):
        wire.encode({"f": object()})
    with pytest.raises(TypeError, match="untagged str"):
        wire.encode({1: "int key"})
