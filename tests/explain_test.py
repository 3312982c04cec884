#!/usr/bin/python3
"""explain_test.py — `ctphase explain` and `ctphase masktest`, run as a user
would run them.

Usage: tests/explain_test.py BUILD_DIR

Each check runs the real binary in a temporary folder and looks at its exit
status, its output and the files it wrote (maps read back with NumPy, PNGs
parsed chunk by chunk). Prints one line per check and ends with
"N passed, N failed, N skipped". $CTPHASE_EXE overrides the binary.
"""
import json
import os
import struct
import sys
import zlib

import numpy as np

from harness import CTPHASE, ROOT, Skip, Suite, run

SUITE = Suite("cli")
check = SUITE.check

FIX = os.path.join(ROOT, "tests", "reference", "fixtures")
CASE = os.path.join(FIX, "b2_64_c1")
EXPL = os.path.join(FIX, "explain_b2_64_c1")
MODEL = os.path.join(CASE, "model.safetensors")
SERIES = os.path.join(ROOT, "tests", "corpus", "dicom", "two-acq")


def dispatched():
    """Whether this build's main() knows the subcommands."""
    p = run("explain", "--help", ok=False)
    return p.returncode == 0 and "usage:" in p.stdout


def read_png(path):
    """(width, height, colour type, bit depth, raw rows) of a PNG, checking
    the signature, every chunk's CRC and the decompressed size."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    pos, idat, ihdr, chunks = 8, b"", None, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        chunks.append(kind)
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND", chunks
    w, h, depth, ctype = ihdr[0], ihdr[1], ihdr[2], ihdr[3]
    raw = zlib.decompress(idat)
    assert len(raw) == h * (1 + w * 3 * depth // 8), "pixel data size"
    return w, h, ctype, depth, raw


@check
def help_texts():
    for cmd in (["explain", "--help"], ["masktest", "--help"]):
        p = run(*cmd)
        assert "usage:" in p.stdout, f"{cmd}: no usage text"


@check
def explain_npy_shapes_per_layer(tmp):
    # 512x512 DICOM input: a layer's map is 512 >> shift(layer).
    want = {("sam", "1a"): 512, ("sam", "2b"): 256, ("gradcam", "3b"): 128,
            ("sam", "4b"): 64, ("gradcam", "5b"): 32, ("sam", "6"): 16,
            ("cam", None): 16, ("saliency", None): 512, ("guided", None): 512}
    for (method, layer), side in want.items():
        out = os.path.join(tmp, f"{method}-{layer}.npy")
        args = ["explain", SERIES, "--model", MODEL, "--method", method, "--npy", out]
        if layer:
            args += ["--layer", layer]
        run(*args)
        a = np.load(out)
        assert a.shape == (side, side) and a.dtype == np.float32, (method, layer, a.shape)
        assert np.isfinite(a).all() and np.abs(a).max() > 0, (method, layer)
        if method in ("sam", "gradcam"):
            assert a.min() >= 0, f"{method} is non-negative"


@check
def explain_npy_input_matches_pytorch(tmp):
    # Slice 1 of the fixture, its labelled class (neph): SAM at 3b and
    # saliency, against the PyTorch reference maps.
    for method, layer, ref in (("sam", "3b", "sam_3b"), ("saliency", None, "saliency"),
                               ("cam", None, "cam"), ("gradcam", "4b", "gradcam_4b")):
        out = os.path.join(tmp, ref + ".npy")
        args = ["explain", os.path.join(CASE, "x.npy"), "--model", MODEL, "--method",
                method, "--slice", "1", "--class", "neph", "--npy", out]
        if layer:
            args += ["--layer", layer]
        run(*args)
        got, want = np.load(out), np.load(os.path.join(EXPL, ref + ".npy"))[1]
        assert got.shape == want.shape, (ref, got.shape, want.shape)
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=2e-4 * np.abs(want).max())


@check
def explain_png_is_valid_and_input_sized(tmp):
    out = os.path.join(tmp, "o.png")
    p = run("explain", SERIES, "--model", MODEL, "--method", "sam", "--layer", "3b",
            "--png", out)
    assert "wrote" in p.stdout, p.stdout
    w, h, ctype, depth, raw = read_png(out)
    assert (w, h, ctype, depth) == (512, 512, 2, 8), (w, h, ctype, depth)
    # Colour somewhere (the heat map), not a gray picture.
    rows = np.frombuffer(raw, np.uint8).reshape(h, 1 + 3 * w)
    assert rows[:, 0].max() <= 4, "filter types"
    out64 = os.path.join(tmp, "x.png")
    run("explain", os.path.join(CASE, "x.npy"), "--model", MODEL, "--method",
        "guided", "--png", out64)
    assert read_png(out64)[:2] == (64, 64)


@check
def explain_key_slices_numbered(tmp):
    out = os.path.join(tmp, "k.png")
    npy = os.path.join(tmp, "k.npy")
    p = run("explain", SERIES, "--model", MODEL, "--method", "gradcam", "--layer", "6",
            "--key", "2", "--png", out, "--npy", npy)
    for i in (1, 2):
        assert read_png(os.path.join(tmp, f"k-{i}.png"))[:2] == (512, 512)
        assert np.load(os.path.join(tmp, f"k-{i}.npy")).shape == (16, 16)
    assert not os.path.exists(out), "numbered files only"
    assert p.stdout.count("(key)") == 2, p.stdout


@check
def explain_bad_arguments(tmp):
    x = os.path.join(CASE, "x.npy")
    base = ["explain", x, "--model", MODEL]
    cases = [
        (["--method", "lime"], 2, "unknown method"),
        (["--method", "cam", "--layer", "2b"], 2, "layer 6"),
        (["--method", "sam", "--layer", "7c"], 2, "unknown layer"),
        (["--method", "saliency", "--layer", "2b"], 2, "--layer"),
        (["--method", "sam", "--class", "arterial"], 2, "unknown class"),
        (["--method", "sam", "--slice", "0", "--key", "1"], 2, "not both"),
        (["--method", "sam", "--slice", "9"], 1, "slice 9"),
        ([], 2, "--method"),
    ]
    for extra, code, text in cases:
        p = run(*base, *extra, ok=False)
        assert p.returncode == code and text in p.stderr, (extra, p.returncode, p.stderr)
    p = run("explain", os.path.join(tmp, "none.npy"), "--model", MODEL, "--method", "sam",
            ok=False)
    assert p.returncode == 1 and "none.npy" in p.stderr, p.stderr
    p = run("explain", os.path.join(tmp, "nothing"), "--model", MODEL, "--method", "sam",
            ok=False)
    assert p.returncode == 1 and "nothing" in p.stderr, p.stderr


def fixture_labels(tmp):
    """The fixture slices with the model's own predictions as labels (a
    random model gets its own labels right), as .npy files."""
    x = np.load(os.path.join(CASE, "x.npy"))
    xs = np.concatenate([x, 0.9 * x, x[:, :, ::-1]]).astype(np.float32)
    xp = os.path.join(tmp, "x.npy")
    np.save(xp, xs)
    js = json.loads(run("forward", "--model", MODEL, "--input", xp, "--json").stdout)
    names = js["classes"]
    y = np.array([names.index(s["argmax"]) for s in js["slices"]], np.int64)
    yp = os.path.join(tmp, "y.npy")
    np.save(yp, y)
    return xp, yp, y


@check
def masktest_json_from_npy(tmp):
    xp, yp, y = fixture_labels(tmp)
    p = run("masktest", "--npy", xp, "--labels-npy", yp, "--model", MODEL, "--json",
            "--layers", "2b,6")
    doc = json.loads(p.stdout)
    assert doc["slices"] == len(y) and doc["passed_over"] == 0, doc["slices"]
    maps = {c["map"] for c in doc["cells"]}
    assert maps == {"saliency", "guided", "cam", "gradcam@2b", "gradcam@6", "sam@2b",
                    "sam@6"}, maps
    assert len(doc["per_slice"]) == len(y)
    for s in doc["per_slice"]:
        assert all(v > 0 for v in s["top"].values()), s
    pairs = {(c["a"], c["b"]) for c in doc["comparisons"] if c["class"] == "all"}
    assert ("sam@2b", "gradcam@2b") in pairs and ("saliency", "cam") in pairs, pairs
    for c in doc["comparisons"]:
        assert 0 <= c["p"] <= c["p_bonferroni"] <= 1, c
    # Same seed, same numbers; wrong labels are passed over.
    again = json.loads(run("masktest", "--npy", xp, "--labels-npy", yp, "--model", MODEL,
                           "--json", "--layers", "2b,6").stdout)
    assert again["per_slice"] == doc["per_slice"]
    np.save(yp, (y + 1) % 5)
    p = run("masktest", "--npy", xp, "--labels-npy", yp, "--model", MODEL, ok=False)
    assert p.returncode == 1 and "no correctly classified" in p.stderr, p.stderr


@check
def masktest_table_from_dicom(tmp):
    js = json.loads(run("predict", SERIES, "--model", MODEL, "--json").stdout)
    res = js["results"][0]
    phase = res["winner"]
    p = run("masktest", SERIES, "--phase", phase, "--model", MODEL, "--per-series", "1",
            "--methods", "saliency,gradcam,sam", "--layers", "3b")
    out = p.stdout
    for text in ("class", "saliency", "sam@3b", "gradcam@3b", "paired t tests", "+-"):
        assert text in out, (text, out)
    assert "2 slices scored" in out, out  # one per acquisition
    # The same through a labels CSV with a header, as 'ctphase scan' writes.
    csv = os.path.join(tmp, "labels.csv")
    with open(csv, "w") as f:
        f.write("study_instance_uid,series_instance_uid,phase\n")
        f.write(f"1.2.3,{res['series_instance_uid']},{phase}\n")
    p2 = run("masktest", SERIES, "--labels", csv, "--model", MODEL, "--per-series", "1",
             "--methods", "saliency,gradcam,sam", "--layers", "3b")
    assert p2.stdout == out, "labels CSV and --phase give the same table"


@check
def masktest_bad_arguments(tmp):
    p = run("masktest", SERIES, "--model", MODEL, ok=False)
    assert p.returncode == 2, p.stderr
    p = run("masktest", SERIES, "--phase", "noncon", "--methods", "lime", "--model", MODEL,
            ok=False)
    assert p.returncode == 2 and "unknown method" in p.stderr, p.stderr
    p = run("masktest", SERIES, "--phase", "late", "--model", MODEL, ok=False)
    assert p.returncode == 2 and "late" in p.stderr, p.stderr
    csv = os.path.join(tmp, "l.csv")
    with open(csv, "w") as f:
        f.write("9.9.9,cm\n")
    p = run("masktest", SERIES, "--labels", csv, "--model", MODEL, ok=False)
    assert p.returncode == 1 and "no label" in p.stderr, p.stderr
    with open(csv, "w") as f:
        f.write("9.9.9,arterial\n")
    p = run("masktest", SERIES, "--labels", csv, "--model", MODEL, ok=False)
    assert p.returncode == 1 and "l.csv:1" in p.stderr, p.stderr


if __name__ == "__main__":
    READY = os.path.exists(CTPHASE) and dispatched()
    sys.exit(SUITE.main(None if READY else f"{CTPHASE} has no explain/masktest commands"))
