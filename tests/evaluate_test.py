#!/usr/bin/python3
"""evaluate_test.py — `ctphase evaluate`, run as a user would run it.

Usage: tests/evaluate_test.py BUILD_DIR   (CTPHASE=path overrides the binary)

Trains a tiny phantom model once (64x64, 15 series, 2 epochs), then
evaluates it on the held-out rows of its split, on fresh phantom series and
on phantom series written as DICOM, and checks the report: the keys and
value ranges of metrics.json, the consistency of its numbers (confusion
matrix sums, accuracy = trace / n, per-series votes equal to `ctphase
predict`), report.html's tables and SVG plots, the example PNGs, a rerun
giving the same numbers, and bad arguments exiting 2. The model is barely
trained: the checks are about the evaluation, not the model. Prints one line
per check and ends with "N passed, N failed, N skipped".
"""
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build"))
CTPHASE = os.environ.get("CTPHASE") or os.path.join(BUILD, "src", "cli", "ctphase")
CHECKS = []
CLASSES = ["noncon", "cm", "cmneph", "neph", "pyelo"]
STATE = {}


class Skip(Exception):
    """A check that cannot run here; the message says why."""


def check(fn):
    CHECKS.append(fn)
    return fn


def run(*args, ok=True, threads="1"):
    """Runs ctphase. One thread unless asked: on a loaded machine OpenMP's
    spinning barriers make small multi-threaded runs many times slower."""
    if threads and args and args[0] in ("evaluate", "train", "explain", "predict"):
        args = (*args, "--threads", threads)
    p = subprocess.run([CTPHASE, *args], capture_output=True, text=True, timeout=300)
    if ok and p.returncode != 0:
        raise AssertionError(f"ctphase {' '.join(args)} exited {p.returncode}: {p.stderr}")
    return p


def model(tmp_root):
    """The tiny model, trained once for all checks."""
    if "train" not in STATE:
        out = os.path.join(tmp_root, "train")
        run("train", "--out", out, "--phantom", "15", "--size", "64",
            "--slices-per-series", "4", "--epochs", "2", "--seed", "3", "--quiet")
        STATE["train"] = out
    return STATE["train"]


def in01(v, what):
    assert v is None or (0.0 <= v <= 1.0), f"{what} = {v} outside [0, 1]"


def check_level(level, what):
    """Keys, ranges and internal consistency of one level of metrics.json."""
    n = level["n"]
    mat = level["confusion"]["matrix"]
    assert len(mat) == 5 and all(len(r) == 5 for r in mat), f"{what}: confusion shape"
    assert sum(map(sum, mat)) == n, f"{what}: confusion sums to {sum(map(sum, mat))}, not {n}"
    trace = sum(mat[i][i] for i in range(5))
    assert math.isclose(level["accuracy"], trace / n, abs_tol=1e-9), what
    near = sum(mat[t][p] for t in range(5) for p in range(5) if abs(t - p) <= 1)
    assert math.isclose(level["accuracy_within_one"], near / n, abs_tol=1e-9), what
    for key in ("precision", "recall", "f1", "auc", "precision_within_one",
                "recall_within_one", "f1_within_one"):
        in01(level["macro"][key], f"{what} macro {key}")
    for c, cls in enumerate(CLASSES):
        pc = level["per_class"][cls]
        assert pc["support"] == sum(mat[c]), f"{what}: support of {cls}"
        for key, v in pc.items():
            if key != "support":
                in01(v, f"{what} {cls} {key}")
        if pc["support"] > 0 and sum(mat[t][c] for t in range(5)) > 0:
            assert math.isclose(pc["precision"], mat[c][c] / sum(mat[t][c] for t in range(5)),
                                abs_tol=1e-9), f"{what}: precision of {cls}"
        roc = level["roc"][cls]
        if pc["support"] == 0 or pc["support"] == n:
            assert roc["fpr"] == [] and roc["auc"] is None, f"{what}: {cls} has no curve"
        else:
            fpr, tpr = roc["fpr"], roc["tpr"]
            assert fpr[0] == 0 and tpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1, f"{what} ROC ends"
            assert all(b >= a for a, b in zip(fpr, fpr[1:])), f"{what}: fpr not monotone"
            assert all(b >= a for a, b in zip(tpr, tpr[1:])), f"{what}: tpr not monotone"
            in01(roc["auc"], f"{what} {cls} auc")


def load(report):
    with open(os.path.join(report, "metrics.json")) as f:
        return json.load(f)


@check
def help_and_bad_arguments(tmp):
    p = run("evaluate", "--help")
    assert "usage: ctphase evaluate" in p.stdout, p.stdout
    r = os.path.join(tmp, "r")
    bad = [
        [],                                                   # no report, no data
        ["--report", r],                                      # no data
        ["--phantom", "5"],                                   # no report
        ["--report", r, "--phantom", "5", "--split", tmp],    # two sources
        ["--report", r, "--phantom", "0"],
        ["--report", r, "--phantom", "five"],
        ["--report", r, "--labels", "x.csv"],                 # labels without data
        ["--report", r, "--phantom", "5", "--layers", "7c"],
        ["--report", r, "--phantom", "5", "--examples", "9"],
        ["--report", r, "--phantom", "5", "--batch", "0"],
        ["--report", r, "--phantom", "5", "--nosuch"],
    ]
    for args in bad:
        p = run("evaluate", *args, ok=False)
        assert p.returncode == 2, f"evaluate {args}: exit {p.returncode}, not 2: {p.stderr}"
    assert not os.path.exists(r), "a usage error must not write a report"
    # A missing split folder is a failure of the job, not of usage.
    p = run("evaluate", "--report", r, "--split", os.path.join(tmp, "none"), ok=False)
    assert p.returncode == 1 and "split.csv" in p.stderr, (p.returncode, p.stderr)


@check
def split_report(tmp):
    train = model(os.path.dirname(tmp))
    rep = os.path.join(tmp, "r")
    p = run("evaluate", "--model", os.path.join(train, "best.safetensors"),
            "--split", train, "--report", rep, threads=None)
    assert "single slice" in p.stdout and "voted" in p.stdout, p.stdout
    m = load(rep)
    tests = [r for r in csv.DictReader(open(os.path.join(train, "split.csv")))
             if r["split"] == "test"]
    assert tests, "the tiny split has no test series"
    assert m["data"]["source"] == "split" and m["data"]["series"] == len(tests)
    assert m["model"]["input_size"] == 64 and len(m["model"]["sha256"]) == 64
    assert m["classes"] == CLASSES
    # Every slice of every test series (a phantom series has dozens).
    series = {s["id"]: s for s in m["voted"]["series"]}
    assert set(series) == {r["series"] for r in tests}, (series.keys(), tests)
    for r in tests:
        s = series[r["series"]]
        assert s["label"] == r["phase"] and s["slices"] == s["slices_in_series"] >= 10, s
        assert math.isclose(sum(s["vote_share"]), 1.0, abs_tol=1e-5), s
        assert s["winner"] == CLASSES[max(range(5), key=lambda c: s["vote_share"][c])]
    assert m["single_slice"]["n"] == sum(s["slices"] for s in series.values())
    check_level(m["single_slice"], "single")
    check_level(m["voted"], "voted")
    assert m["voted"]["n"] == len(tests) and m["voted"]["roc_score"] == "vote share"
    # The second way to vote: each series' argmax of its mean probability.
    vm = m["voted_mean_probability"]
    mat = [[0] * 5 for _ in range(5)]
    for s in series.values():
        mat[CLASSES.index(s["label"])][max(range(5), key=lambda c: s["mean_prob"][c])] += 1
    assert vm["confusion"]["matrix"] == mat, (vm["confusion"], mat)
    assert vm["n"] == len(tests) and vm["roc_score"] == "mean probability", vm
    assert vm["macro"]["auc"] == m["voted"]["macro_auc_mean_probability"], vm["macro"]
    assert "mean prob" in p.stdout, p.stdout
    assert m["paper"]["single_slice"]["auc"] == 0.981 and m["paper"]["voted"]["f1"] == 0.921
    html = open(os.path.join(rep, "report.html")).read()
    for needle in ("<svg", "Table 1", "Table 2", "Within one", "ROC curves",
                   "0.776", "0.988", "Masking specificity", "Pointing game",
                   "mean probability instead of the majority"):
        assert needle in html, f"report.html lacks {needle!r}"
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', ""), \
        "the report must be self-contained"
    # With K slices per series: exactly K per series, as the trainer took them.
    rep4 = os.path.join(tmp, "r4")
    run("evaluate", "--model", os.path.join(train, "best.safetensors"), "--split", train,
        "--report", rep4, "--slices-per-series", "4", "--mask-slices", "0", "--quiet")
    m4 = load(rep4)
    assert m4["single_slice"]["n"] == 4 * len(tests)
    assert m4["masking"]["slices"] == 0 and m4["examples"] == []


@check
def phantom_report_masking_pointing_examples(tmp):
    train = model(os.path.dirname(tmp))
    rep = os.path.join(tmp, "r")
    args = ["evaluate", "--model", os.path.join(train, "best.safetensors"), "--phantom", "5",
            "--slices-per-series", "6", "--mask-slices", "10", "--layers", "2b,4b",
            "--report", rep, "--quiet"]
    run(*args)
    m = load(rep)
    assert m["data"]["source"] == "phantom" and m["single_slice"]["n"] == 30
    ids = [s["id"] for s in m["voted"]["series"]]
    assert all(int(i.split("-")[1]) > 2**62 for i in ids), f"fresh seeds must be far: {ids}"
    assert [s["label"] for s in m["voted"]["series"]] == CLASSES
    check_level(m["single_slice"], "single")
    mk = m["masking"]
    assert mk["maps"] == ["saliency", "guided", "cam", "gradcam@2b", "sam@2b",
                          "gradcam@4b", "sam@4b"], mk["maps"]
    # A barely trained model still gets some slices right (whatever class it
    # favours, one series has that class).
    assert 0 < mk["slices"] <= 10, mk["slices"]
    assert mk["fraction"] == 0.1
    cells = [c for c in mk["cells"] if c["class"] == "all"]
    assert len(cells) == len(mk["maps"]) and all(c["n"] == mk["slices"] for c in cells)
    assert all(c["top_mean"] > 0 and c["bottom_mean"] > 0 for c in cells), cells
    assert any(c["a"] == "sam@2b" and c["b"] == "gradcam@2b" for c in mk["comparisons"])
    pt = m["pointing"]
    assert pt["slices"] == mk["slices"] and pt["regions"] == ["kidney", "aorta", "ivc", "any"]
    area = pt["area_share"]
    assert 0 < area["any"]["mean"] < 0.5, area
    assert area["any"]["mean"] >= area["kidney"]["mean"], area
    for name in mk["maps"]:
        for reg in pt["regions"]:
            v = pt["mass_share"][name][reg]
            in01(v["mean"], f"pointing {name} {reg}")
    ex = m["examples"]
    assert 1 <= len(ex) <= 4 and len({e["class"] for e in ex}) == len(ex), ex
    html = open(os.path.join(rep, "report.html")).read()
    for e in ex:
        path = os.path.join(rep, e["file"])
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", f"{e['file']} is not a PNG"
        assert f'src="{e["file"]}"' in html, f"report.html does not show {e['file']}"
    assert html.count("<svg") >= 6, "ROC x2, masking x3, pointing x1 expected"
    # The same run again gives the same numbers.
    rep2 = os.path.join(tmp, "r2")
    run(*args[:-3], "--report", rep2, "--quiet")
    m2 = load(rep2)
    for k in ("single_slice", "voted", "masking", "pointing"):
        assert m2[k] == m[k], f"{k} differs between two identical runs"


@check
def pointing_matches_labels_written_by_phantom(tmp):
    """The pointing game of one slice, recomputed outside: the same phantom
    written by `ctphase phantom` (same seed, phase, size), its labels.npy, and
    the saliency map of that slice from `ctphase explain`. The area shares
    are exact; the mass shares differ only by the DICOM's integer HU, which
    can flip a few ReLU gates of the smoke-trained model: within 10%, or
    within 0.1% of the map's mass for a region as small as the IVC at 64²."""
    import numpy as np
    train = model(os.path.dirname(tmp))
    best = os.path.join(train, "best.safetensors")
    rep = os.path.join(tmp, "r")
    run("evaluate", "--model", best, "--phantom", "5", "--slices-per-series", "6",
        "--mask-slices", "5", "--layers", "3b", "--examples", "0", "--report", rep, "--quiet")
    pts = load(rep)["pointing"]["per_slice"]
    assert pts, "no pointing slice"
    pt = pts[0]
    seed = pt["series"].split("-")[1]
    out = os.path.join(tmp, "ph")
    run("phantom", "--out", out, "--series", "1", "--seed", seed, "--phase", pt["class"],
        "--size", "64", "--quiet")
    (folder,) = [os.path.join(out, d) for d in os.listdir(out) if d.startswith("series-")]
    labels = np.load(os.path.join(folder, "labels.npy"))[pt["slice"]]
    nz = len([f for f in os.listdir(folder) if f.endswith(".dcm")])
    regions = {"kidney": np.isin(labels, [7, 8, 9]), "aorta": labels == 4, "ivc": labels == 5}
    regions["any"] = regions["kidney"] | regions["aorta"] | regions["ivc"]
    for name, mask in regions.items():
        assert math.isclose(pt["area_share"][name], mask.mean(), abs_tol=1e-12), name
    sal = os.path.join(tmp, "sal.npy")
    # DICOM acquisition order runs from the feet: phantom slice k is nz-1-k.
    run("explain", folder, "--slice", str(nz - 1 - pt["slice"]), "--class", pt["class"],
        "--method", "saliency", "--npy", sal, "--model", best)
    m = np.abs(np.load(sal).astype(np.float64)).reshape(labels.shape)
    for name, mask in regions.items():
        want = (m * mask).sum() / m.sum()
        got = pt["mass_share"]["saliency"][name]
        assert abs(got - want) <= 0.1 * want + 1e-3, f"{name}: {got} vs {want}"


@check
def kidney_range_counts_the_slices_that_show_a_kidney(tmp):
    """The paper scored slices from the top to the bottom of the kidneys; the
    phantom reaches 0-3 cm beyond. kidney_range must hold exactly the slices
    whose labels (labels.npy of the same phantom written by `ctphase
    phantom`) show cortex, medulla or collecting system, and one vote per
    series."""
    import numpy as np
    train = model(os.path.dirname(tmp))
    rep = os.path.join(tmp, "r")
    run("evaluate", "--model", os.path.join(train, "best.safetensors"), "--phantom", "5",
        "--mask-slices", "0", "--report", rep, "--quiet")
    m = load(rep)
    kr = m["kidney_range"]
    want = 0
    for s in m["voted"]["series"]:
        out = os.path.join(tmp, s["id"])
        run("phantom", "--out", out, "--series", "1", "--seed", s["id"].split("-")[1],
            "--phase", s["label"], "--size", "64", "--quiet")
        (folder,) = [os.path.join(out, d) for d in os.listdir(out) if d.startswith("series-")]
        labels = np.load(os.path.join(folder, "labels.npy"))
        assert labels.shape[0] == s["slices"], (labels.shape, s["slices"])
        want += int(np.isin(labels, [7, 8, 9]).any(axis=(1, 2)).sum())
    assert kr["single_slice"]["n"] == want, (kr["single_slice"]["n"], want)
    assert 0 < want < m["single_slice"]["n"], (want, m["single_slice"]["n"])
    assert kr["voted"]["n"] == 5
    for name in ("single_slice", "voted"):
        level = dict(kr[name], roc={c: {"fpr": [], "auc": None} for c in CLASSES})
        mat = level["confusion"]["matrix"]
        assert sum(map(sum, mat)) == level["n"], name
        assert math.isclose(level["accuracy"], sum(mat[i][i] for i in range(5)) / level["n"])
    assert "kidney range" in open(os.path.join(rep, "report.html")).read()


@check
def dicom_report_matches_predict(tmp):
    train = model(os.path.dirname(tmp))
    best = os.path.join(train, "best.safetensors")
    data = os.path.join(tmp, "dicom")
    run("phantom", "--out", data, "--series", "5", "--size", "64", "--slices", "8",
        "--seed", "77", "--quiet")
    rep = os.path.join(tmp, "r")
    # The phantom's manifest has series_uid and phase columns: a labels CSV.
    run("evaluate", "--model", best, "--data", data, "--labels",
        os.path.join(data, "manifest.csv"), "--report", rep, "--mask-slices", "4", "--quiet")
    m = load(rep)
    assert m["data"]["source"] == "dicom" and m["single_slice"]["n"] == 40
    assert "pointing" not in m and "kidney_range" not in m, "DICOM input carries no organ labels"
    check_level(m["single_slice"], "single")
    pred = json.loads(run("predict", data, "--model", best, "--json").stdout)["results"]
    mine = {s["id"]: s for s in m["voted"]["series"]}
    manifest = {r["series_uid"]: r["phase"] for r in csv.DictReader(open(os.path.join(data, "manifest.csv")))}
    assert len(pred) == len(mine) == 5
    for r in pred:
        s = mine[r["series_instance_uid"]]
        assert s["label"] == manifest[r["series_instance_uid"]]
        assert s["winner"] == r["winner"] and s["phase"] == r["phase"], (s, r)
        for c, cls in enumerate(CLASSES):
            assert math.isclose(s["vote_share"][c], r["vote_share"][cls], abs_tol=1e-6)
            assert math.isclose(s["mean_prob"][c], r["mean_prob"][cls], abs_tol=1e-6)
    # A labels file naming no series found is a failure, not a usage error.
    labels = os.path.join(tmp, "labels.csv")
    with open(labels, "w") as f:
        f.write("SeriesInstanceUID,phase\n1.2.3.4,cm\n")
    p = run("evaluate", "--model", best, "--data", data, "--labels", labels,
            "--report", os.path.join(tmp, "r2"), ok=False)
    assert p.returncode == 1 and "no series" in p.stderr, p.stderr


def main():
    passed = failed = skipped = 0
    with tempfile.TemporaryDirectory() as root:
        for fn in CHECKS:
            tmp = tempfile.mkdtemp(dir=root)
            t0 = time.time()
            try:
                fn(tmp)
                passed += 1
                print(f"ok      evaluate_{fn.__name__:<48} {time.time() - t0:6.2f}s")
            except Skip as e:
                skipped += 1
                print(f"skip    evaluate_{fn.__name__}: skipped: {e}")
            except Exception:
                failed += 1
                print(f"FAIL    evaluate_{fn.__name__}")
                traceback.print_exc(file=sys.stdout)
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
