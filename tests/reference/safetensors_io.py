"""A minimal safetensors writer and reader (F32 only), in pure Python + numpy.

Debian ships no `safetensors` package, and the format is small enough to
write by hand:

    u64 little-endian  N      length of the JSON header in bytes
    N bytes            JSON   {"__metadata__": {str: str, ...},
                               "<tensor>": {"dtype": "F32", "shape": [...],
                                            "data_offsets": [begin, end]}, ...}
                              padded with spaces to a multiple of 8
    rest               data   raw little-endian tensor bytes; data_offsets are
                              relative to the start of this section

The writer lays tensors out consecutively in the order given, so the same
tensors and metadata always give the same bytes. It is also the building
block of make_bad_models.py, which needs to write headers that lie.
"""

import json
import struct

import numpy as np


def build_header(tensors, metadata):
    """Header dict for `tensors` (an ordered list of (name, float32 array)).

    Returns (header, blobs): the header with data_offsets filled in for a
    consecutive layout, and the list of raw little-endian byte strings in the
    same order.
    """
    header = {}
    if metadata is not None:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs, offset = [], 0
    for name, array in tensors:
        blob = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    return header, blobs


def encode_header(header):
    """The JSON bytes of a header, space-padded to a multiple of 8."""
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return text + b" " * (-len(text) % 8)


def pack(header_bytes, data, header_len=None):
    """Assembles a file: length prefix (overridable, to build bad files),
    header bytes, data bytes."""
    n = len(header_bytes) if header_len is None else header_len
    return struct.pack("<Q", n) + header_bytes + data


def dumps(tensors, metadata):
    """The bytes of a safetensors file holding `tensors` and `metadata`."""
    header, blobs = build_header(tensors, metadata)
    return pack(encode_header(header), b"".join(blobs))


def save(path, tensors, metadata):
    with open(path, "wb") as f:
        f.write(dumps(tensors, metadata))


def load(path):
    """Reads an F32 safetensors file: returns (ordered [(name, array)], metadata).

    Tensors come back in data-offset order. Only what the writer produces is
    supported; this is a test helper, not a validator.
    """
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    metadata = header.pop("__metadata__", {})
    tensors = []
    for name, entry in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        if entry["dtype"] != "F32":
            raise ValueError(f"{name}: dtype {entry['dtype']} is not F32")
        begin, end = entry["data_offsets"]
        array = np.frombuffer(data[begin:end], dtype="<f4").reshape(entry["shape"])
        tensors.append((name, array.copy()))
    return tensors, metadata
