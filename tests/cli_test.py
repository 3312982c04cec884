#!/usr/bin/python3
"""cli_test.py — the ctphase command line, run as a user would run it.

Usage: tests/cli_test.py BUILD_DIR

Each check runs the real binary in a temporary folder and looks at its exit
status, its output and the files it wrote (read back with NumPy). Prints one
line per check and ends with "N passed, N failed".
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import traceback

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "reference", "fixtures")
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build"))
CTPHASE = os.path.join(BUILD, "src", "cli", "ctphase")
CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


def run(*args, ok=True):
    p = subprocess.run([CTPHASE, *args], capture_output=True, text=True, timeout=300)
    if ok and p.returncode != 0:
        raise AssertionError(f"ctphase {' '.join(args)} exited {p.returncode}: {p.stderr}")
    return p


@check
def help_on_every_command():
    for cmd in (["--help"], ["model", "--help"], ["model", "info", "--help"],
                ["model", "init", "--help"], ["forward", "--help"]):
        p = run(*cmd)
        assert "usage:" in p.stdout, f"{cmd}: no usage text"
    p = run("nosuch", ok=False)
    assert p.returncode == 2 and "unknown command" in p.stderr


@check
def model_init_and_info(tmp):
    path = os.path.join(tmp, "m.safetensors")
    run("model", "init", "--seed", "5", "--out", path)
    p = run("model", "info", path)
    assert "132181" in p.stdout
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    assert digest in p.stdout, "info must print the file's SHA-256"
    info = json.loads(run("model", "info", path, "--json").stdout)
    assert info["params"] == 132181 and info["sha256"] == digest
    assert info["metadata"]["format"] == "ctphase/1"
    # Same seed, same bytes.
    path2 = os.path.join(tmp, "m2.safetensors")
    run("model", "init", "--seed", "5", "--out", path2)
    assert open(path, "rb").read() == open(path2, "rb").read()


@check
def forward_matches_pytorch(tmp):
    case = os.path.join(FIX, "b2_64_c1")
    out = os.path.join(tmp, "logits.npy")
    run("forward", "--model", os.path.join(case, "model.safetensors"),
        "--input", os.path.join(case, "x.npy"), "--out", out)
    got, want = np.load(out), np.load(os.path.join(case, "logits.npy"))
    assert got.shape == (2, 5) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
    js = json.loads(run("forward", "--model", os.path.join(case, "model.safetensors"),
                        "--input", os.path.join(case, "x.npy"), "--json").stdout)
    probs = np.array([s["probs"] for s in js["slices"]])
    np.testing.assert_allclose(probs, np.load(os.path.join(case, "probs.npy")),
                               rtol=1e-3, atol=1e-5)
    assert abs(probs.sum(axis=1) - 1).max() < 1e-5


@check
def forward_accepts_2d_input(tmp):
    case = os.path.join(FIX, "b2_64_c1")
    x = np.load(os.path.join(case, "x.npy"))[1, 0]
    np.save(os.path.join(tmp, "s.npy"), x)
    out = os.path.join(tmp, "l.npy")
    run("forward", "--model", os.path.join(case, "model.safetensors"),
        "--input", os.path.join(tmp, "s.npy"), "--out", out)
    np.testing.assert_allclose(np.load(out)[0], np.load(os.path.join(case, "logits.npy"))[1],
                               rtol=1e-3, atol=1e-4)


@check
def forward_refuses_bad_input(tmp):
    model = os.path.join(FIX, "b2_64_c1", "model.safetensors")
    np.save(os.path.join(tmp, "c3.npy"), np.zeros((1, 3, 64, 64), np.float32))
    p = run("forward", "--model", model, "--input", os.path.join(tmp, "c3.npy"), ok=False)
    assert p.returncode == 1 and "channels" in p.stderr, p.stderr
    np.save(os.path.join(tmp, "odd.npy"), np.zeros((1, 1, 50, 64), np.float32))
    p = run("forward", "--model", model, "--input", os.path.join(tmp, "odd.npy"), ok=False)
    assert p.returncode == 1 and "multiples of 32" in p.stderr, p.stderr
    p = run("forward", "--model", model, "--input", os.path.join(tmp, "none.npy"), ok=False)
    assert p.returncode == 1 and "none.npy" in p.stderr, p.stderr
    p = run("forward", "--model", model, ok=False)
    assert p.returncode == 2


@check
def broken_model_refused_with_reason():
    bad = os.path.join(ROOT, "tests", "corpus", "models", "missing_tensor.safetensors")
    p = run("model", "info", bad, ok=False)
    assert p.returncode == 1 and "fc.bias" in p.stderr, p.stderr


def main():
    passed = failed = 0
    for fn in CHECKS:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                fn(tmp) if fn.__code__.co_argcount else fn()
                passed += 1
                print(f"ok      cli_{fn.__name__}")
            except Exception:
                failed += 1
                print(f"FAIL    cli_{fn.__name__}")
                traceback.print_exc(file=sys.stdout)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
