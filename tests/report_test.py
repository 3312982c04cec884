#!/usr/bin/python3
"""report_test.py — `ctphase report`: the TID 1500 SR and the SAM Secondary
Captures ctphased puts into the PACS, checked as a PACS and a validator
would see them.

Usage: tests/report_test.py BUILD_DIR

Every object written must pass dciodvfy (dicom3tools) with no "Error" line
and read with pydicom; the SR must print with dsrdump without a warning;
the SR's coded phase, vote, references and algorithm identification must
match the prediction and the source; UIDs must be the same on a second run
and change with the model, the configuration and the acquisition. Inputs:
a synthetic series from `ctphase phantom`, the corpus' two-acquisition
series, and, when present, the real series in ../shared/data/real-ct.
Prints one line per check and ends with "N passed, N failed, N skipped".
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pydicom

from harness import CTPHASE, QUICK, ROOT, Skip, Suite, run

SUITE = Suite("report")
check = SUITE.check

MODEL = os.path.join(ROOT, "models", "ctphase-phantom-v1.safetensors")
FIX_MODEL = os.path.join(ROOT, "tests", "reference", "fixtures", "b2_64_c1",
                         "model.safetensors")
TWO_ACQ = os.path.join(ROOT, "tests", "corpus", "dicom", "two-acq")
REAL = os.path.normpath(os.path.join(ROOT, "..", "shared", "data", "real-ct",
                                     "hcc002-arterial-and-portal-venous"))
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"
CLASSES = ["noncon", "cm", "cmneph", "neph", "pyelo"]

WORK = tempfile.mkdtemp(prefix="ctphase-report-test-")
_phantom = None


def phantom():
    """A 512x512 synthetic series (made once for the suite)."""
    global _phantom
    if _phantom is None:
        out = os.path.join(WORK, "phantom")
        run("phantom", "--out", out, "--series", "1", "--phase", "neph",
            "--slices", "10", "--size", "512", "--quiet")
        _phantom = out
    return _phantom


def report(paths, out, *extra, model=MODEL, ok=True):
    """Runs `ctphase report`; returns (process, [(kind, path, sop, series)])."""
    p = run("report", *paths, "--out", out, "--model", model, *extra, ok=ok)
    objs = [tuple(line.split(" ")) for line in p.stdout.splitlines() if line]
    for o in objs:
        assert len(o) == 4 and o[0] in ("SR", "SC"), f"bad output line {o}"
    return p, objs


def predict(paths, model=MODEL):
    p = run("predict", *paths, "--model", model, "--json")
    return json.loads(p.stdout)["results"]


def dciodvfy(path):
    """Runs dciodvfy; fails on any "Error" line; returns the warnings."""
    if not shutil.which("dciodvfy"):
        raise Skip("dciodvfy (dicom3tools) is not installed")
    p = subprocess.run(["dciodvfy", path], capture_output=True, text=True,
                       timeout=120)
    lines = (p.stdout + p.stderr).splitlines()
    errors = [ln for ln in lines if "Error" in ln]
    assert not errors, f"dciodvfy {path}:\n" + "\n".join(errors)
    return [ln for ln in lines if ln.startswith("Warning")]


def dsrdump(path, allow=()):
    """Runs dsrdump -v; fails on any warning not containing one of allow."""
    if not shutil.which("dsrdump"):
        raise Skip("dsrdump (dcmtk) is not installed")
    p = subprocess.run(["dsrdump", "-v", "+Pc", path], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, f"dsrdump {path} exited {p.returncode}: {p.stderr}"
    bad = [ln for ln in p.stderr.splitlines()
           if ln.strip() and not any(a in ln for a in allow)]
    assert not bad, f"dsrdump {path} warned:\n{p.stderr}"
    return p.stdout


def walk(items, depth=0):
    """Every content item of an SR tree, depth first, with its depth."""
    for it in items or []:
        yield it, depth
        yield from walk(getattr(it, "ContentSequence", None), depth + 1)


def concept(it):
    cn = getattr(it, "ConceptNameCodeSequence", None)
    return (cn[0].CodeValue, cn[0].CodingSchemeDesignator) if cn else None


def find(ds, value, scheme):
    return [it for it, _ in walk(ds.ContentSequence) if concept(it) == (value, scheme)]


def source_files(folder):
    out = []
    for dirpath, _, names in os.walk(folder):
        for n in names:
            if n.endswith(".dcm"):
                out.append(pydicom.dcmread(os.path.join(dirpath, n),
                                           stop_before_pixels=True))
    return out


def check_sr(path, result, sources, sha):
    """The SR of one result against the prediction and the source files."""
    ds = pydicom.dcmread(path)
    src = next(s for s in sources if s.SOPInstanceUID in
               {r.ReferencedSOPInstanceUID for r in
                ds.CurrentRequestedProcedureEvidenceSequence[0]
                .ReferencedSeriesSequence[0].ReferencedSOPSequence})
    assert ds.SOPClassUID == SR_CLASS
    assert ds.Modality == "SR"
    assert ds.CompletionFlag == "COMPLETE" and ds.VerificationFlag == "UNVERIFIED"
    assert ds.Manufacturer == "ctphase"
    assert ds.StudyInstanceUID == src.StudyInstanceUID
    assert ds.SeriesInstanceUID != src.SeriesInstanceUID
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
               "StudyDate", "AccessionNumber", "SpecificCharacterSet"):
        assert str(ds.get(kw, "")) == str(src.get(kw, "")), kw
    assert ds.ContentDate and ds.ContentTime
    assert ds.ConceptNameCodeSequence[0].CodeValue == "126000"
    tid = ds.ContentTemplateSequence[0]
    assert (tid.MappingResource, tid.TemplateIdentifier) == ("DCMR", "1500")
    schemes = {s.CodingSchemeDesignator for s in ds.CodingSchemeIdentificationSequence}
    assert "99CTPHASE" in schemes, schemes
    # The phase, coded, twice: finding of the measurement group and the
    # qualitative evaluation.
    want = result["phase"]
    (ev,) = find(ds, "phase", "99CTPHASE")
    assert ev.ConceptCodeSequence[0].CodeValue == want, (ev, want)
    assert ev.ConceptCodeSequence[0].CodingSchemeDesignator == "99CTPHASE"
    (finding,) = find(ds, "121071", "DCM")
    assert finding.ConceptCodeSequence[0].CodeValue == want
    (leading,) = find(ds, "leading", "99CTPHASE")
    assert leading.ConceptCodeSequence[0].CodeValue == result["winner"]
    (proc,) = find(ds, "121058", "DCM")
    sct = proc.ConceptCodeSequence[0]
    assert sct.CodingSchemeDesignator == "SCT"
    if want == "noncon":
        assert sct.CodeValue == "399331006"
    elif want != "indeterminate":
        assert sct.CodeValue == "1331946003"
    # Vote shares and slice counts.
    for c in CLASSES:
        (num,) = find(ds, f"share-{c}", "99CTPHASE")
        mv = num.MeasuredValueSequence[0]
        assert mv.MeasurementUnitsCodeSequence[0].CodeValue == "%"
        assert abs(float(mv.NumericValue) - 100 * result["vote_share"][c]) < 0.01
    (used,) = find(ds, "slices-used", "99CTPHASE")
    assert int(float(used.MeasuredValueSequence[0].NumericValue)) == result["slices_used"]
    (skipped,) = find(ds, "slices-skipped", "99CTPHASE")
    assert int(float(skipped.MeasuredValueSequence[0].NumericValue)) == result["slices_skipped"]
    # TID 4019, with the model's SHA-256.
    params = [p.TextValue for p in find(ds, "111002", "DCM")]
    assert f"model sha256 {sha}" in params, params
    assert find(ds, "111001", "DCM") and find(ds, "111003", "DCM")
    # Device observer and language.
    (obs,) = find(ds, "121005", "DCM")
    assert obs.ConceptCodeSequence[0].CodeValue == "121007"
    assert find(ds, "121012", "DCM") and find(ds, "121049", "DCM")
    # Image library and evidence: every slice used, nothing else.
    lib = {it.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
           for it, _ in walk(ds.ContentSequence) if it.ValueType == "IMAGE"}
    ev_seq = ds.CurrentRequestedProcedureEvidenceSequence
    assert len(ev_seq) == 1 and ev_seq[0].StudyInstanceUID == src.StudyInstanceUID
    (ser,) = ev_seq[0].ReferencedSeriesSequence
    assert ser.SeriesInstanceUID == src.SeriesInstanceUID
    evidence = {r.ReferencedSOPInstanceUID for r in ser.ReferencedSOPSequence}
    assert lib == evidence and len(lib) == result["slices_used"]
    known = {s.SOPInstanceUID: s for s in sources}
    for r in ser.ReferencedSOPSequence:
        assert r.ReferencedSOPInstanceUID in known
        assert r.ReferencedSOPClassUID == known[r.ReferencedSOPInstanceUID].SOPClassUID
    return ds


def check_sc(path, sources, sr):
    ds = pydicom.dcmread(path)
    known = {s.SOPInstanceUID: s for s in sources}
    assert ds.SOPClassUID == SC_CLASS
    assert ds.PhotometricInterpretation == "RGB" and ds.SamplesPerPixel == 3
    assert ds.PlanarConfiguration == 0 and ds.BitsAllocated == 8
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
    assert ds.BurnedInAnnotation == "YES" and ds.ConversionType == "WSD"
    assert ds.StudyInstanceUID == sr.StudyInstanceUID
    assert ds.SeriesInstanceUID != sr.SeriesInstanceUID
    assert "not for diagnosis" in ds.SeriesDescription
    (ref,) = ds.SourceImageSequence
    src = known[ref.ReferencedSOPInstanceUID]
    assert ref.ReferencedSOPClassUID == src.SOPClassUID
    assert (ds.Rows, ds.Columns) == (src.Rows, src.Columns)
    assert str(ds.PatientName) == str(src.PatientName)
    if "PixelSpacing" in src:
        assert [float(v) for v in ds.PixelSpacing] == \
            pytest_approx([float(v) for v in src.PixelSpacing])
    px = ds.pixel_array
    assert px.shape == (ds.Rows, ds.Columns, 3) and px.dtype == np.uint8
    colour = np.abs(px[..., 0].astype(int) - px[..., 2].astype(int))
    assert (colour > 40).mean() > 0.01, "no overlay colours in the picture"
    # The legend's box, top-left: dark with white text.
    box = px[4:40, 4:200]
    assert (box.max(axis=2) > 200).mean() > 0.02 and (box.max(axis=2) < 60).mean() > 0.3
    return ds


def pytest_approx(values, tol=1e-4):
    class Approx:
        def __eq__(self, other):
            return len(other) == len(values) and all(
                abs(a - b) <= tol * max(1.0, abs(b)) for a, b in zip(other, values))
    return Approx()


def model_sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@check
def help_text():
    p = run("report", "--help")
    assert "usage: ctphase report" in p.stdout and "--uid-root" in p.stdout
    p = run("--help")
    assert "report" in p.stdout


@check
def phantom_objects_are_valid(tmp):
    src = phantom()
    out = os.path.join(tmp, "out")
    _, objs = report([src], out, "--station-ae", "CTPHASE")
    kinds = [o[0] for o in objs]
    assert kinds == ["SR", "SC", "SC", "SC"], kinds
    (result,) = predict([src])
    sources = source_files(src)
    for kind, path, sop, series in objs:
        assert os.path.basename(path) == sop + ".dcm"
        assert len(sop) <= 64 and len(series) <= 64
        warnings = dciodvfy(path)
        for w in warnings:
            assert "99CTPHASE" in w, f"unexpected dciodvfy warning: {w}"
        ds = pydicom.dcmread(path)
        assert ds.SOPInstanceUID == sop and ds.SeriesInstanceUID == series
    sr = check_sr(objs[0][1], result, sources, model_sha(MODEL))
    text = dsrdump(objs[0][1])
    assert "Imaging Measurement Report" in text
    assert "CTPHASE" in text  # the station AE in the observer context
    scs = [check_sc(o[1], sources, sr) for o in objs[1:]]
    assert len({s.SeriesInstanceUID for s in scs}) == 1
    assert sorted(int(s.InstanceNumber) for s in scs) == [1, 2, 3]
    assert len({s.SourceImageSequence[0].ReferencedSOPInstanceUID for s in scs}) == 3


@check
def same_input_same_uids(tmp):
    src = phantom()
    a, b = os.path.join(tmp, "a"), os.path.join(tmp, "b")
    _, oa = report([src], a)
    _, ob = report([src], b)
    assert [o[2:] for o in oa] == [o[2:] for o in ob]
    for x, y in zip(oa[1:], ob[1:]):
        assert pydicom.dcmread(x[1]).PixelData == pydicom.dcmread(y[1]).PixelData
    # Into the same folder again: the same files are replaced, none added.
    _, oc = report([src], a)
    assert sorted(os.listdir(a)) == sorted(os.path.basename(o[1]) for o in oa)
    assert [o[2:] for o in oc] == [o[2:] for o in oa]


@check
def config_model_and_root_change_uids(tmp):
    src = phantom()
    _, base = report([src], os.path.join(tmp, "base"))
    uids = {o[2] for o in base} | {o[3] for o in base}
    for extra, model in ((["--layer", "2b"], MODEL), (["--config-key", "x"], MODEL),
                         (["--masking"], MODEL), ([], FIX_MODEL)):
        _, objs = report([src], os.path.join(tmp, "o"), *extra, model=model)
        other = {o[2] for o in objs} | {o[3] for o in objs}
        assert not uids & other, (extra, model)
    root = "1.2.826.0.1.3680043.10.999"
    _, objs = report([src], os.path.join(tmp, "r"), "--uid-root", root)
    for o in objs:
        assert o[2].startswith(root + ".") and o[3].startswith(root + ".")
        comps = o[2].split(".")
        assert all(c.isdigit() and (c == "0" or c[0] != "0") for c in comps), o[2]
        dciodvfy(o[1])


@check
def acquisitions_get_their_own_reports(tmp):
    out = os.path.join(tmp, "out")
    _, objs = report([TWO_ACQ], out, "--key-slices", "2", "--masking",
                     model=FIX_MODEL)
    srs = [o for o in objs if o[0] == "SR"]
    assert len(srs) == 2 and len(objs) == 6, objs
    assert srs[0][3] != srs[1][3]
    results = predict([TWO_ACQ], model=FIX_MODEL)
    sources = source_files(TWO_ACQ)
    for sr_obj, result in zip(srs, results):
        ds = check_sr(sr_obj[1], result, sources, model_sha(FIX_MODEL))
        (n,) = find(ds, "sam-mask-slices", "99CTPHASE")
        scored = int(float(n.MeasuredValueSequence[0].NumericValue))
        assert 0 <= scored <= 2
        assert len(find(ds, "sam-mask-top", "99CTPHASE")) == (scored > 0)
        dsrdump(sr_obj[1])
    for o in objs:
        dciodvfy(o[1])


@check
def all_slices_and_sr_only(tmp):
    src = phantom()
    (result,) = predict([src])
    _, objs = report([src], os.path.join(tmp, "all"), "--all-slices")
    assert len(objs) == 1 + result["slices_used"]
    numbers = sorted(int(pydicom.dcmread(o[1]).InstanceNumber) for o in objs[1:])
    assert numbers == list(range(1, result["slices_used"] + 1))
    _, objs = report([src], os.path.join(tmp, "sr"), "--key-slices", "0")
    assert [o[0] for o in objs] == ["SR"]


@check
def indeterminate_result(tmp):
    # A margin no vote can reach: the phase is coded "indeterminate", the
    # overlays explain the leading phase.
    src = phantom()
    _, objs = report([src], os.path.join(tmp, "out"), "--margin", "1.01",
                     "--key-slices", "1")
    p = run("predict", src, "--model", MODEL, "--json", "--margin", "1.01")
    (result,) = json.loads(p.stdout)["results"]
    assert result["phase"] == "indeterminate"
    sr = check_sr(objs[0][1], result, source_files(src), model_sha(MODEL))
    (proc,) = find(sr, "121058", "DCM")
    shares = sorted(CLASSES, key=lambda c: -result["vote_share"][c])[:2]
    want = "77477000" if "noncon" in shares else "1331946003"
    assert proc.ConceptCodeSequence[0].CodeValue == want
    dciodvfy(objs[0][1])
    dsrdump(objs[0][1])
    sc = check_sc(objs[1][1], source_files(src), sr)
    assert result["winner"] in sc.DerivationDescription


@check
def character_set_is_kept(tmp):
    # A UTF-8 patient name goes through unchanged, with its character set.
    src = os.path.join(tmp, "utf8")
    os.makedirs(src)
    for n in sorted(os.listdir(TWO_ACQ))[:4]:
        ds = pydicom.dcmread(os.path.join(TWO_ACQ, n))
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.PatientName = "Müller^Jörg"
        ds.save_as(os.path.join(src, n))
    _, objs = report([src], os.path.join(tmp, "out"), "--key-slices", "1",
                     model=FIX_MODEL)
    assert len(objs) == 2
    for o in objs:
        ds = pydicom.dcmread(o[1])
        assert ds.SpecificCharacterSet == "ISO_IR 192"
        assert str(ds.PatientName) == "Müller^Jörg", str(ds.PatientName)
        dciodvfy(o[1])
    # DCMTK 3.6.7's VR checker does not know UTF-8 and says so.
    dsrdump(objs[0][1], allow=("VR checker does not support",))


@check
def bad_input_gives_clear_errors(tmp):
    p, objs = report([os.path.join(tmp, "missing")], os.path.join(tmp, "o"), ok=False)
    assert p.returncode == 1 and "missing" in p.stderr and not objs, p.stderr
    empty = os.path.join(tmp, "empty")
    os.makedirs(empty)
    with open(os.path.join(empty, "x.txt"), "w") as f:
        f.write("not DICOM")
    p, objs = report([empty], os.path.join(tmp, "o"), ok=False)
    assert p.returncode == 1 and "no DICOM series" in p.stderr, p.stderr
    # A series without a usable slice: its result failed, no report.
    loc = os.path.join(tmp, "loc")
    os.makedirs(loc)
    shutil.copy(os.path.join(ROOT, "tests", "corpus", "dicom", "localizer.dcm"), loc)
    p, objs = report([loc], os.path.join(tmp, "o"), ok=False)
    assert p.returncode == 1 and "no report" in p.stderr and not objs, p.stderr
    assert not os.path.exists(os.path.join(tmp, "o")) or not os.listdir(os.path.join(tmp, "o"))
    for bad in (["--uid-root", "1.02.3"], ["--layer", "7c"], ["--key-slices", "-1"],
                ["--bogus"]):
        p, _ = report([TWO_ACQ], os.path.join(tmp, "o"), *bad, ok=False)
        assert p.returncode == 2, (bad, p.stderr)
    p, _ = report([TWO_ACQ], os.path.join(tmp, "o"), "--uid-root", "1.02.3", ok=False)
    assert "1.02.3" in p.stderr
    # An output folder under a file.
    f = os.path.join(tmp, "file")
    open(f, "w").close()
    p, objs = report([TWO_ACQ], os.path.join(f, "sub"), model=FIX_MODEL, ok=False)
    assert p.returncode == 1 and "file" in p.stderr and not objs, p.stderr


@check
def real_series(tmp):
    if not os.path.isdir(REAL):
        raise Skip(f"{REAL} is not there")
    if QUICK:
        raise Skip("large real series skipped under the sanitizers")
    out = os.path.join(tmp, "out")
    _, objs = report([REAL], out, "--masking")
    results = predict([REAL])
    sources = source_files(REAL)
    srs = [o for o in objs if o[0] == "SR"]
    assert len(srs) == len(results) == 2
    for sr_obj, result in zip(srs, results):
        sr = check_sr(sr_obj[1], result, sources, model_sha(MODEL))
        dsrdump(sr_obj[1])
    for o in objs:
        dciodvfy(o[1])
        if o[0] == "SC":
            check_sc(o[1], sources, sr)


if __name__ == "__main__":
    def dispatched():
        p = run("report", "--help", ok=False)
        return p.returncode == 0 and "usage:" in p.stdout
    READY = os.path.exists(CTPHASE) and dispatched()
    sys.exit(SUITE.main(None if READY else f"{CTPHASE} has no report command",
                        cleanup=lambda: shutil.rmtree(WORK, ignore_errors=True)))
