#!/usr/bin/python3
"""cli_test.py — the ctphase command line, run as a user would run it.

Usage: tests/cli_test.py BUILD_DIR

Each check runs the real binary in a temporary folder and looks at its exit
status, its output and the files it wrote (read back with NumPy). Prints one
line per check and ends with "N passed, N failed".
"""
import csv
import hashlib
import json
import os
import signal
import subprocess
import sys

import numpy as np

from harness import CTPHASE, QUICK, ROOT, Skip, Suite, run

SUITE = Suite("cli")
check = SUITE.check

FIX = os.path.join(ROOT, "tests", "reference", "fixtures")
CORPUS = os.path.join(ROOT, "tests", "corpus", "dicom")
HCC = os.path.join(ROOT, "..", "shared", "data", "real-ct", "hcc002-arterial-and-portal-venous")
MODEL = os.path.join(FIX, "b2_64_c1", "model.safetensors")
BUNDLED = os.path.join(ROOT, "models", "ctphase-phantom-v1.safetensors")


def schema_validator():
    import jsonschema
    with open(os.path.join(ROOT, "schemas", "result.schema.json")) as f:
        schema = json.load(f)
    return jsonschema.Draft202012Validator(schema)


@check
def help_on_every_command():
    for cmd in (["--help"], ["model", "--help"], ["model", "info", "--help"],
                ["model", "init", "--help"], ["forward", "--help"], ["predict", "--help"], ["train", "--help"],
                ["scan", "--help"]):
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


@check
def predict_json_validates_against_schema():
    p = run("predict", os.path.join(CORPUS, "two-acq"), "--model", MODEL, "--json", "--per-slice")
    doc = json.loads(p.stdout)
    results = doc["results"]
    assert len(results) == 2, f"{len(results)} results, want 2 acquisitions"
    v = schema_validator()
    for r in results:
        errors = list(v.iter_errors(r))
        assert not errors, "; ".join(e.message for e in errors[:3])
        assert r["phase"] in ("noncon", "cm", "cmneph", "neph", "pyelo", "indeterminate")
        assert abs(sum(r["vote_share"].values()) - 1) < 1e-4
        assert len(r["slices"]) == r["slices_used"] > 0
    assert [r["acquisition_index"] for r in results] == [0, 1]


@check
def predict_reports_skips_and_unreadable_files():
    p = run("predict", CORPUS, "--model", MODEL, "--json")
    doc = json.loads(p.stdout)
    v = schema_validator()
    for r in doc["results"]:
        errors = list(v.iter_errors(r))
        assert not errors, "; ".join(e.message for e in errors[:3])
    reasons = " ".join(s["reason"] for r in doc["results"] for s in r["skipped"])
    assert "localizer" in reasons.lower(), "the localizer must be listed as skipped"
    unread = {os.path.basename(u["path"]): u["reason"] for u in doc["unreadable"]}
    assert "not-dicom.txt" in unread and unread["not-dicom.txt"], unread
    assert "empty.dcm" in unread, unread
    text = run("predict", os.path.join(CORPUS, "with-localizer"), "--model", MODEL).stdout
    assert "skipped" in text and "phase" in text and "#" in text, text


@check
def predict_without_model():
    if os.path.exists(BUNDLED):
        p = run("predict", os.path.join(CORPUS, "two-acq"))
        assert "phase" in p.stdout
    else:
        p = run("predict", os.path.join(CORPUS, "two-acq"), ok=False)
        assert p.returncode == 1 and "--model" in p.stderr, p.stderr
    p = run("predict", os.path.join(CORPUS, "nothing-here"), "--model", MODEL, ok=False)
    assert p.returncode == 1 and "nothing-here" in p.stderr, p.stderr


@check
def predict_real_series_two_acquisitions():
    if not os.path.isdir(HCC):
        raise Skip("../shared/data/real-ct/hcc002-arterial-and-portal-venous is absent")
    if QUICK:
        raise Skip("large real series not run under the sanitizers")
    doc = json.loads(run("predict", HCC, "--model", MODEL, "--json").stdout)
    res = doc["results"]
    assert len(res) == 2, len(res)
    assert [r["acquisition_number"] for r in res] == [1, 2]
    assert [r["slices_used"] for r in res] == [109, 109]
    assert res[0]["series_instance_uid"] == res[1]["series_instance_uid"]
    # The bundled model's real-data check (docs/model-card.md): arterial is
    # cm, portal venous cmneph or neph.
    doc = json.loads(run("predict", HCC, "--model", BUNDLED, "--json").stdout)
    phases = [r["phase"] for r in doc["results"]]
    assert phases[0] == "cm" and phases[1] in ("cmneph", "neph"), phases


@check
def scan_writes_csv(tmp):
    out = os.path.join(tmp, "scan.csv")
    p = run("scan", CORPUS, "--csv", out, "--model", MODEL, "--jobs", "2")
    rows = list(csv.DictReader(open(out, newline="")))
    assert rows, "no rows"
    assert set(rows[0]) >= {"series_instance_uid", "phase", "slices_used", "error", "share_cm"}
    ok = [r for r in rows if not r["error"]]
    bad = [r for r in rows if r["error"]]
    assert ok and bad, "want both predicted series and error rows"
    assert any(r["path"].endswith("not-dicom.txt") for r in bad)
    for r in ok:
        assert r["phase"] in ("noncon", "cm", "cmneph", "neph", "pyelo", "indeterminate")
        shares = sum(float(r["share_" + c]) for c in ("noncon", "cm", "cmneph", "neph", "pyelo"))
        assert abs(shares - 1) < 1e-3
    two = [r for r in ok if r["path"].endswith("two-acq")]
    assert len(two) == 2, two
    assert "scan:" in p.stderr


@check
def scan_interrupted_leaves_valid_csv(tmp):
    if not os.path.isdir(HCC):
        raise Skip("../shared/data/real-ct/hcc002-arterial-and-portal-venous is absent")
    out = os.path.join(tmp, "scan.csv")
    proc = subprocess.Popen([CTPHASE, "scan", HCC, CORPUS, "--csv", out, "--model", MODEL,
                             "--threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    # Interrupt once the CSV exists (the header scan is over).
    import time
    deadline = time.time() + 120
    while not os.path.exists(out) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode in (0, 130), (proc.returncode, err)
    rows = list(csv.reader(open(out, newline="")))
    assert rows[0][0] == "study_instance_uid"
    assert all(len(r) == len(rows[0]) for r in rows), "every row complete"
    if proc.returncode == 130:
        assert "interrupted" in err


@check
def train_smoke_loss_falls_and_resumes(tmp):
    out = os.path.join(tmp, "run")
    args = ["train", "--out", out, "--phantom", "15", "--size", "64",
            "--slices-per-series", "4", "--batch", "4", "--seed", "3", "--quiet"]
    run(*args, "--epochs", "4")
    hist = list(csv.DictReader(open(os.path.join(out, "history.csv"))))
    assert [int(h["epoch"]) for h in hist] == [1, 2, 3, 4]
    losses = [float(h["train_loss"]) for h in hist]
    assert losses[-1] < losses[0], f"training loss did not fall: {losses}"
    split = list(csv.DictReader(open(os.path.join(out, "split.csv"))))
    assert {r["split"] for r in split} == {"train", "val", "test"}, split
    info = json.loads(run("model", "info", os.path.join(out, "best.safetensors"), "--json").stdout)
    assert info["metadata"]["input_size"] == "64" and "phantom" in info["metadata"]["trained_on"]
    run(*args, "--epochs", "5", "--resume")
    hist = list(csv.DictReader(open(os.path.join(out, "history.csv"))))
    assert [int(h["epoch"]) for h in hist] == [1, 2, 3, 4, 5], hist
    p = run("train", "--out", out, ok=False)
    assert p.returncode == 2
    # --init: a new run from the best weights, fresh history; with lr 0 the
    # weights stay as loaded, so its validation loss is the best one above.
    best = min(float(h["val_loss"]) for h in hist)
    init = os.path.join(tmp, "init")
    run("train", "--out", init, "--init", os.path.join(out, "best.safetensors"),
        *args[3:], "--epochs", "1", "--lr", "0")
    hist2 = list(csv.DictReader(open(os.path.join(init, "history.csv"))))
    assert [int(h["epoch"]) for h in hist2] == [1], hist2
    assert abs(float(hist2[0]["val_loss"]) - best) < 1e-3, (hist2, best)
    info = json.loads(run("model", "info", os.path.join(init, "best.safetensors"), "--json").stdout)
    src = json.loads(run("model", "info", os.path.join(out, "best.safetensors"), "--json").stdout)
    assert info["metadata"]["initialised_from"] == "best.safetensors, sha256 " + src["sha256"], \
        (info["metadata"], src["sha256"])
    p = run("train", "--out", init, "--init", os.path.join(out, "best.safetensors"),
            "--resume", *args[3:], ok=False)
    assert p.returncode == 2 and "exclude" in p.stderr, p.stderr


@check
def train_fresh_draws_new_patients_each_epoch(tmp):
    # With lr 0 and no augmentation the weights never change, so a training
    # loss that moves between epochs can only come from new patients, and
    # the validation loss (same patients) must not move at all. Batches of
    # one: the class-weighted loss of a batch would otherwise depend on the
    # shuffle.
    base = ["train", "--phantom", "15", "--size", "64", "--slices-per-series", "3",
            "--batch", "1", "--seed", "5", "--quiet", "--init", MODEL, "--lr", "0",
            "--no-augment", "--epochs", "3"]

    def losses(name, *extra):
        out = os.path.join(tmp, name)
        run(*base, "--out", out, *extra)
        hist = list(csv.DictReader(open(os.path.join(out, "history.csv"))))
        return ([round(float(h["train_loss"]), 4) for h in hist],
                [round(float(h["val_loss"]), 4) for h in hist])

    same_train, same_val = losses("same")
    assert len(set(same_train)) == 1, f"without --fresh the patients repeat: {same_train}"
    fresh_train, fresh_val = losses("fresh", "--fresh")
    assert len(set(fresh_train)) == 3, f"--fresh: new patients every epoch: {fresh_train}"
    assert fresh_train[0] == same_train[0], (fresh_train, same_train)
    assert fresh_val == same_val, (fresh_val, same_val)
    again_train, _ = losses("again", "--fresh")
    assert again_train == fresh_train, "the fresh patients are fixed by the seed"
    info = json.loads(run("model", "info", os.path.join(tmp, "fresh", "best.safetensors"),
                          "--json").stdout)
    assert "new training patients every epoch" in info["metadata"]["trained_on"], info
    p = run("train", "--out", os.path.join(tmp, "x"), "--data", tmp, "--labels",
            os.path.join(tmp, "l.csv"), "--fresh", ok=False)
    assert p.returncode == 2 and "--fresh" in p.stderr, p.stderr


if __name__ == "__main__":
    sys.exit(SUITE.main())
