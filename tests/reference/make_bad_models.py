#!/usr/bin/python3
"""Broken model files for the loader's refusal tests: tests/corpus/models/.

Each file is the b2_64_c1 fixture model (tests/reference/fixtures/b2_64_c1/
model.safetensors, written by make_fixtures.py; run that first) with exactly
one thing wrong, so that the loader can only refuse it for that reason. The
files keep the fixture's real weights: git's delta compression stores the
near-identical copies cheaply.

Writes, next to the models:
    expect.tsv   one line per file: <filename> TAB <token>, no header; the
                 loader's error message must contain <token>, compared
                 case-insensitively
    README.md    the same as a table, with what is wrong in each file

Run: /usr/bin/python3 tests/reference/make_bad_models.py
"""

import copy
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io as st  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
BASE = os.path.join(HERE, "fixtures", "b2_64_c1", "model.safetensors")
OUT_DIR = os.path.join(HERE, "..", "corpus", "models")


def from_tensors(tensors, metadata):
    """A well-formed file of (possibly unexpected) tensors and metadata."""
    return st.dumps(tensors, metadata)


def from_header(header, blobs, header_len=None):
    """A file from an explicit (possibly lying) header and data blobs."""
    return st.pack(st.encode_header(header), b"".join(blobs), header_len)


def cases():
    """Yields (filename, token, description, bytes) for every broken file."""
    tensors, meta = st.load(BASE)
    good = st.dumps(tensors, meta)
    header, blobs = st.build_header(tensors, meta)
    names = [n for n, _ in tensors]

    yield ("missing_tensor.safetensors", "fc.bias",
           "no `fc.bias` tensor",
           from_tensors([t for t in tensors if t[0] != "fc.bias"], meta))

    extra = np.zeros((64, 64, 3, 3), dtype=np.float32)
    yield ("extra_tensor.safetensors", "conv7.weight",
           "an additional `conv7.weight` [64,64,3,3] after the expected tensors",
           from_tensors(tensors + [("conv7.weight", extra)], meta))

    # conv3a.weight as [32,16,3,2]: the data matches the (wrong) shape.
    reshaped = [(n, a[..., :2].copy() if n == "conv3a.weight" else a)
                for n, a in tensors]
    yield ("wrong_shape.safetensors", "shape",
           "`conv3a.weight` is [32,16,3,2] instead of [32,16,3,3] "
           "(data sized for the wrong shape)",
           from_tensors(reshaped, meta))

    # conv2a.bias as F16: 16 half floats (32 bytes), offsets consistent.
    h = {"__metadata__": meta}
    pieces, off = [], 0
    for n, a in tensors:
        if n == "conv2a.bias":
            blob = a.astype("<f2").tobytes()
            dtype = "F16"
        else:
            blob = a.astype("<f4").tobytes()
            dtype = "F32"
        h[n] = {"dtype": dtype, "shape": list(a.shape),
                "data_offsets": [off, off + len(blob)]}
        pieces.append(blob)
        off += len(blob)
    yield ("wrong_dtype.safetensors", "dtype",
           "`conv2a.bias` stored as F16 (32 bytes, offsets consistent)",
           from_header(h, pieces))

    hdr_len = 8 + len(st.encode_header(header))
    data_len = len(good) - hdr_len
    yield ("truncated.safetensors", "truncated",
           "file cut in the middle of the data section (%d of %d data bytes)"
           % (data_len // 2, data_len),
           good[:hdr_len + data_len // 2])

    bad_json = b'{"__metadata__": {"format": "ctphase/1"}, this is not json'
    bad_json += b" " * (-len(bad_json) % 8)
    yield ("header_not_json.safetensors", "json",
           "header bytes are not valid JSON (data section intact)",
           st.pack(bad_json, b"".join(blobs)))

    yield ("header_length_absurd.safetensors", "header length",
           "header length field is 2^40",
           (1 << 40).to_bytes(8, "little") + good[8:])

    yield ("header_length_past_eof.safetensors", "header length",
           "header length field is larger than the rest of the file",
           (len(good)).to_bytes(8, "little") + good[8:])

    yield ("empty.safetensors", "too short", "0 bytes", b"")

    yield ("five_bytes.safetensors", "too short",
           "the first 5 bytes of a valid file (not even a header length)",
           good[:5])

    yield ("no_metadata.safetensors", "metadata",
           "no `__metadata__` object",
           from_tensors(tensors, None))

    other = dict(meta, format="other/9")
    yield ("wrong_format.safetensors", "format",
           "`__metadata__.format` is \"other/9\"",
           from_tensors(tensors, other))

    # fc.bias points past the end of the data section (size still right).
    h = copy.deepcopy(header)
    end = sum(len(b) for b in blobs)
    h["fc.bias"]["data_offsets"] = [end + 64, end + 64 + 20]
    yield ("offsets_out_of_range.safetensors", "offsets",
           "`fc.bias` data_offsets [%d,%d] lie beyond the %d data bytes"
           % (end + 64, end + 84, end),
           from_header(h, blobs))

    # conv1a.bias spans 60 bytes where its shape [16] F32 needs 64.
    h = copy.deepcopy(header)
    b0, _ = h["conv1a.bias"]["data_offsets"]
    h["conv1a.bias"]["data_offsets"] = [b0, b0 + 60]
    yield ("offsets_size_mismatch.safetensors", "offsets",
           "`conv1a.bias` data_offsets span 60 bytes, shape [16] F32 needs 64",
           from_header(h, blobs))

    nan = [(n, a.copy()) for n, a in tensors]
    nan[names.index("conv1b.weight")][1][3, 5, 1, 2] = np.nan
    yield ("nonfinite.safetensors", "non-finite",
           "a NaN in `conv1b.weight` [3,5,1,2]",
           from_tensors(nan, meta))

    # Beyond the basic list: metadata the loader also validates.
    yield ("bad_in_channels.safetensors", "in_channels",
           "`__metadata__.in_channels` is \"2\" (only 1 and 3 exist)",
           from_tensors(tensors, dict(meta, in_channels="2")))

    yield ("wrong_classes.safetensors", "classes",
           "`__metadata__.classes` lists the phases in another order",
           from_tensors(tensors, dict(meta, classes="cm,noncon,cmneph,neph,pyelo")))


README_HEAD = """\
# Broken model files

Every `*.safetensors` here must be **refused** by `ctp_model_load()`, with an
error message that mentions the token in the last column (compare
case-insensitively). `expect.tsv` holds the same mapping, one
`<filename>\\t<token>` line per file, no header, for the C test to read.

Each file is the `tests/reference/fixtures/b2_64_c1` model with exactly one
defect, so the loader has only one reason to refuse it. Regenerate with:

    /usr/bin/python3 tests/reference/make_fixtures.py     # the base model
    /usr/bin/python3 tests/reference/make_bad_models.py

| file | what is wrong | message must mention |
|---|---|---|
"""


def main():
    if not os.path.exists(BASE):
        sys.exit("missing %s: run make_fixtures.py first" % BASE)
    os.makedirs(OUT_DIR, exist_ok=True)
    rows = []
    for name, token, what, data in cases():
        with open(os.path.join(OUT_DIR, name), "wb") as f:
            f.write(data)
        rows.append((name, token, what))
        print("%-36s %8d bytes  -> %s" % (name, len(data), token))
    with open(os.path.join(OUT_DIR, "expect.tsv"), "w") as f:
        for name, token, _ in rows:
            f.write("%s\t%s\n" % (name, token))
    with open(os.path.join(OUT_DIR, "README.md"), "w") as f:
        f.write(README_HEAD)
        for name, token, what in rows:
            f.write("| `%s` | %s | `%s` |\n" % (name, what, token))
    print("%d files in %s" % (len(rows), os.path.normpath(OUT_DIR)))


if __name__ == "__main__":
    main()
