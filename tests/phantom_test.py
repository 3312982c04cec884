#!/usr/bin/python3
"""phantom_test.py — `ctphase phantom`, checked from the outside.

Usage: tests/phantom_test.py BUILD_DIR

Runs the real binary into temporary folders and reads what it wrote the
way other tools will: every DICOM file with pydicom (pixels, HU through the
rescale, geometry, identity), a few files with dciodvfy (dicom3tools; any
line with "Error" fails), manifest.csv with the csv module and labels.npy
with NumPy. Prints one line per check and ends with "N passed, N failed".
"""
import csv
import glob
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pydicom

from harness import CTPHASE, ROOT, Suite, run

SUITE = Suite("phantom")
check = SUITE.check

CLASSES = ["noncon", "cm", "cmneph", "neph", "pyelo"]
LABEL_AORTA, LABEL_IVC, LABEL_CORTEX, LABEL_MEDULLA, LABEL_BOWEL = 4, 5, 7, 8, 12


def manifest(out):
    with open(os.path.join(out, "manifest.csv"), newline="") as f:
        return list(csv.DictReader(f))


def read_series(folder):
    """The series' datasets in InstanceNumber order, and HU (Z, H, W)."""
    files = sorted(glob.glob(os.path.join(folder, "*.dcm")))
    ds = [pydicom.dcmread(f) for f in files]
    ds.sort(key=lambda d: int(d.InstanceNumber))
    hu = np.stack([d.pixel_array.astype(np.float64) * float(d.RescaleSlope)
                   + float(d.RescaleIntercept) for d in ds])
    return ds, hu


def eroded_mean(hu, lab, label):
    """Mean HU where the label and its neighbours 2 px away agree."""
    m = lab == label
    core = m.copy()
    core[:, 2:, :] &= m[:, :-2, :]
    core[:, :-2, :] &= m[:, 2:, :]
    core[:, :, 2:] &= m[:, :, :-2]
    core[:, :, :-2] &= m[:, :, 2:]
    return float(hu[core].mean()) if core.sum() >= 40 else float("nan")


# One run shared by the checks that only read its output.
SHARED = {}


def shared_run():
    if "out" not in SHARED:
        out = tempfile.mkdtemp(prefix="ctphase-phantom-")
        SHARED["out"] = out
        run("phantom", "--out", out, "--series", "5", "--slices", "12", "--seed", "11",
            "--quiet")
    return SHARED["out"]


@check
def help_and_usage_errors(tmp):
    p = run("phantom", "--help")
    assert "usage:" in p.stdout and "--time-s" in p.stdout
    for bad in (["phantom"], ["phantom", "--out", tmp, "--phase", "arterial"],
                ["phantom", "--out", tmp, "--phase", "cm", "--time-s", "30"],
                ["phantom", "--out", tmp, "--series", "0"],
                ["phantom", "--out", tmp, "--bogus"]):
        p = run(*bad, ok=False)
        assert p.returncode == 2, f"{bad}: exit {p.returncode}"


@check
def manifest_and_folders():
    out = shared_run()
    rows = manifest(out)
    assert len(rows) == 5
    assert [r["phase"] for r in rows] == CLASSES, "phases must cycle through the classes"
    assert [int(r["seed"]) for r in rows] == [11, 12, 13, 14, 15]
    uids = {r["series_uid"] for r in rows}
    assert len(uids) == 5
    for r in rows:
        folder = os.path.join(out, r["folder"])
        assert os.path.isdir(folder), folder
        assert len(glob.glob(os.path.join(folder, "*.dcm"))) == 12
        assert int(r["num_slices"]) == 12 and int(r["rows"]) == 512
        assert 0.6 <= float(r["pixel_spacing_mm"]) <= 0.9
        assert 1 <= float(r["slice_thickness_mm"]) <= 5
        assert 8 <= float(r["noise_sd_hu"]) <= 32
        t = float(r["time_s"])
        if r["phase"] == "noncon":
            assert t < 0
        else:
            lo, hi = {"cm": (20, 42.5), "cmneph": (42.5, 80), "neph": (80, 180),
                      "pyelo": (180, 600)}[r["phase"]]
            assert lo <= t < hi, (r["phase"], t)
    codes = open(os.path.join(out, "label_codes.csv")).read()
    assert "7,renal_cortex" in codes and "9,collecting_system" in codes


@check
def labels_npy_shapes():
    out = shared_run()
    for r in manifest(out):
        lab = np.load(os.path.join(out, r["folder"], "labels.npy"))
        assert lab.dtype == np.uint8 and lab.shape == (12, 512, 512), lab.shape
        assert lab.max() < 20
        assert (lab == LABEL_CORTEX).any() and (lab == LABEL_AORTA).any()
        assert lab[:, 0, 0].max() == 0, "corners are air"


@check
def dicom_tags_and_geometry():
    out = shared_run()
    for r in manifest(out):
        ds, hu = read_series(os.path.join(out, r["folder"]))
        d0 = ds[0]
        assert d0.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
        assert d0.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert d0.Modality == "CT" and d0.Manufacturer == "ctphase phantom"
        assert str(d0.PatientName) == f"PHANTOM^{r['seed']}"
        assert d0.SeriesInstanceUID == r["series_uid"]
        assert d0.StudyInstanceUID == r["study_uid"]
        assert r["phase"] in d0.SeriesDescription
        assert list(d0.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
        assert ("ContrastBolusAgent" in d0) == (r["phase"] != "noncon")
        assert (d0.Rows, d0.Columns) == (512, 512)
        assert abs(float(d0.PixelSpacing[0]) - float(r["pixel_spacing_mm"])) < 1e-4
        assert abs(float(d0.SliceThickness) - float(r["slice_thickness_mm"])) < 1e-4
        assert [float(v) for v in d0.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        assert len({d.SOPInstanceUID for d in ds}) == len(ds)
        assert all(d.SeriesInstanceUID == d0.SeriesInstanceUID for d in ds)
        # Instance 1 is the top slice; z falls by the slice spacing.
        z = np.array([float(d.ImagePositionPatient[2]) for d in ds])
        step = np.diff(z)
        assert np.allclose(step, -float(r["slice_spacing_mm"]), atol=1e-3), step
        assert abs(z[0] - float(r["first_z_mm"])) < 1e-3
        assert all(float(d.SliceLocation) == float(d.ImagePositionPatient[2]) for d in ds)
        # HU: air outside, soft tissue inside, within the stored range.
        assert hu.min() >= -1024 and hu.max() <= 3071
        assert np.median(hu[:, :20, :20]) < -900
        signed = r["storage"] == "signed"
        assert int(d0.PixelRepresentation) == (1 if signed else 0)
        assert float(d0.RescaleIntercept) == (0 if signed else -1024)


@check
def hu_follows_phase_and_labels():
    out = shared_run()
    means = {}
    for r in manifest(out):
        folder = os.path.join(out, r["folder"])
        _, hu = read_series(folder)
        lab = np.load(os.path.join(folder, "labels.npy"))
        means[r["phase"]] = {name: eroded_mean(hu, lab, code) for name, code in
                             (("aorta", LABEL_AORTA), ("cortex", LABEL_CORTEX),
                              ("medulla", LABEL_MEDULLA))}
    assert means["noncon"]["aorta"] < 70, means["noncon"]
    assert means["cm"]["aorta"] > 150, means["cm"]
    assert means["cm"]["cortex"] - means["cm"]["medulla"] > 30, means["cm"]
    assert abs(means["neph"]["cortex"] - means["neph"]["medulla"]) < 45, means["neph"]


@check
def dciodvfy_has_no_errors():
    if not shutil.which("dciodvfy"):
        raise AssertionError("dciodvfy (dicom3tools) not installed")
    out = shared_run()
    checked = 0
    for r in manifest(out)[:3]:
        files = sorted(glob.glob(os.path.join(out, r["folder"], "*.dcm")))
        for f in (files[0], files[len(files) // 2], files[-1]):
            p = subprocess.run(["dciodvfy", f], capture_output=True, text=True, timeout=60)
            text = p.stdout + p.stderr
            errors = [line for line in text.splitlines() if "Error" in line]
            assert not errors, f"{f}: {errors}"
            checked += 1
    assert checked == 9


@check
def same_seed_same_bytes(tmp):
    a, b = os.path.join(tmp, "a"), os.path.join(tmp, "b")
    for out in (a, b):
        run("phantom", "--out", out, "--phase", "neph", "--seed", "77", "--slices", "6",
            "--size", "256", "--quiet")
    fa = sorted(glob.glob(os.path.join(a, "*", "*")))
    fb = sorted(glob.glob(os.path.join(b, "*", "*")))
    assert [os.path.relpath(f, a) for f in fa] == [os.path.relpath(f, b) for f in fb]
    for x, y in zip(fa, fb):
        assert open(x, "rb").read() == open(y, "rb").read(), f"{x} differs"
    lab = np.load(os.path.join(a, "series-0000-neph", "labels.npy"))
    assert lab.shape == (6, 256, 256)


@check
def time_gives_phase(tmp):
    run("phantom", "--out", tmp, "--time-s", "95", "--seed", "3", "--slices", "4",
        "--size", "128", "--quiet")
    (r,) = manifest(tmp)
    assert r["phase"] == "neph" and abs(float(r["time_s"]) - 95) < 1e-6
    run("phantom", "--out", tmp, "--time-s", "-1", "--seed", "3", "--slices", "4",
        "--size", "128", "--quiet")
    (r,) = manifest(tmp)
    assert r["phase"] == "noncon"
    d = pydicom.dcmread(sorted(glob.glob(os.path.join(tmp, r["folder"], "*.dcm")))[0])
    assert "ContrastBolusAgent" not in d


def cleanup():
    if "out" in SHARED:
        shutil.rmtree(SHARED["out"], ignore_errors=True)


if __name__ == "__main__":
    sys.exit(SUITE.main(cleanup=cleanup))
