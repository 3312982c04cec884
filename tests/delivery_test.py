#!/usr/bin/python3
"""delivery_test.py — results into a real PACS: storescu -> ctphased -> Orthanc.

Usage: tests/delivery_test.py BUILD_DIR [NAME...]
(with names, only the checks whose names contain one of them)

Each check starts its own ctphased (the Daemon of service_test.py: port 0,
its own data dir, stable_seconds 1, the bundled 128-pixel phantom model)
and an Orthanc on free loopback ports (its own storage, no remote access,
stopped by PID), pushes small phantom series with DCMTK's storescu, and
reads the results back over Orthanc's REST API: the TID 1500 SR (its
99CTPHASE phase code and its references), the Secondary Captures, the
retries when Orthanc is down or refuses us, the same UIDs when a series is
processed twice, and `ctphase jobs resend`. Every object ctphased wrote
must pass dciodvfy without errors and read with pydicom; the SR must pass
dsrdump. Prints one line per check and ends with
"N passed, N failed, N skipped".
"""
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request

import pydicom

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import service_test as st  # noqa: E402  (its Daemon, storescu and helpers)

ROOT = st.ROOT
CTPHASE = st.CTPHASE
MODEL = os.path.join(ROOT, "models", "ctphase-phantom-v1.safetensors")
ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
SR_CLASSES = {"1.2.840.10008.5.1.4.1.1.88.34", "1.2.840.10008.5.1.4.1.1.88.33",
              "1.2.840.10008.5.1.4.1.1.88.22"}
SC_CLASSES = {"1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.7.4"}
KEY_SLICES = 3
CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------------------
# Orthanc
# ---------------------------------------------------------------------------

class Orthanc:
    """One Orthanc on loopback with its own storage, stopped by PID."""

    def __init__(self, tmp, aet="ORTHANC", check_called_aet=True, dicom_port=None):
        self.dir = os.path.join(tmp, "orthanc")
        os.makedirs(self.dir, exist_ok=True)
        self.aet = aet
        self.dicom_port = dicom_port or free_port()
        self.http_port = free_port()
        self.config = os.path.join(self.dir, "orthanc.json")
        cfg = {"Name": "ctphase-delivery-test", "DicomAet": aet,
               "DicomPort": self.dicom_port, "HttpPort": self.http_port,
               "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
               "StorageDirectory": os.path.join(self.dir, "storage"),
               "IndexDirectory": os.path.join(self.dir, "index"),
               "DicomAlwaysAllowStore": True, "DicomAlwaysAllowEcho": True,
               "DicomCheckCalledAet": check_called_aet,
               "DicomCheckModalityHost": False,
               "DicomModalities": {"ctphase": ["CTPHASE", "127.0.0.1", 11112]},
               "Plugins": [], "HttpServerEnabled": True, "SaveJobs": False,
               "StorageCompression": False, "LimitFindResults": 0}
        with open(self.config, "w") as f:
            json.dump(cfg, f)
        self.proc = None

    def start(self, timeout=30):
        out = open(os.path.join(self.dir, "orthanc.log"), "a")
        self.proc = subprocess.Popen([ORTHANC, self.config], stdout=out, stderr=out)
        out.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("Orthanc exited: " + open(
                    os.path.join(self.dir, "orthanc.log")).read()[-2000:])
            try:
                self.get("/system")
                return self
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        raise AssertionError("Orthanc did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def _req(self, path, method="GET", body=None):
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}",
                                     method=method, data=body)
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.read()

    def get(self, path):
        return json.loads(self._req(path))

    def delete(self, path):
        self._req(path, method="DELETE")

    def instances_of_study(self, study_uid):
        """{SOPInstanceUID: (orthanc id, tags)} of one study."""
        body = json.dumps({"Level": "Instance", "Query": {"StudyInstanceUID": study_uid},
                           "Expand": True}).encode()
        found = json.loads(self._req("/tools/find", method="POST", body=body))
        out = {}
        for inst in found:
            tags = self.get(f"/instances/{inst['ID']}/simplified-tags")
            out[tags["SOPInstanceUID"]] = (inst["ID"], tags)
        return out

    def file(self, orthanc_id):
        return self._req(f"/instances/{orthanc_id}/file")


ORTHANCS = []


def orthanc(tmp, **kw):
    o = Orthanc(tmp, **kw)
    ORTHANCS.append(o)
    return o


# ---------------------------------------------------------------------------
# Data and helpers
# ---------------------------------------------------------------------------

def phantom(tmp, seed, name="ph", slices=6, phase="neph"):
    """A small phantom series (128 x 128, few slices): its files, study
    and series UIDs."""
    out = os.path.join(tmp, f"{name}{seed}")
    p = subprocess.run([CTPHASE, "phantom", "--out", out, "--series", "1", "--size", "128",
                        "--slices", str(slices), "--seed", str(seed), "--phase", phase,
                        "--quiet", "--threads", "1"], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    folder = [d for d in os.listdir(out) if d.startswith("series-")][0]
    files = st.files_in(os.path.join(out, folder))
    files = [f for f in files if f.endswith(".dcm")]
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    return files, ds.StudyInstanceUID, ds.SeriesInstanceUID


def daemon(tmp, name="d", **cfg):
    base = {"model": MODEL, "send_backoff_initial_seconds": 1,
            "send_backoff_max_seconds": 2, "send_timeout_seconds": 5,
            "report_key_slices": KEY_SLICES, "inference_threads": 1}
    base.update(cfg)
    return st.Daemon(tmp, name=name, config=base).start()


def push(d, files):
    rc, out = st.storescu(d.port, files)
    assert rc == 0 and st.successes(out) == len(files), out[-2000:]


def outbound(d, where="1=1", *args):
    return d.query(f"SELECT * FROM outbound WHERE {where} ORDER BY id", *args)


def wait_outbound(d, pred, timeout=90, what="outbound rows"):
    """Waits until pred(rows) holds; returns the rows."""
    deadline = time.time() + timeout
    rows = []
    while time.time() < deadline:
        rows = outbound(d)
        if rows and pred(rows):
            return rows
        if d.proc.poll() is not None:
            raise AssertionError(f"ctphased died: {open(d.out).read()[-2000:]}")
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached after {timeout} s: "
                         f"{[(r['kind'], r['destination'], r['state'], r['attempts'], r['error']) for r in rows]}")


def all_sent(rows):
    return all(r["state"] == "sent" for r in rows)


def walk_codes(items):
    """Every (ConceptNameCode, value) pair in an SR content tree."""
    for it in items:
        name = it.ConceptNameCodeSequence[0] if "ConceptNameCodeSequence" in it else None
        if "ConceptCodeSequence" in it:
            yield name, it.ConceptCodeSequence[0]
        if "ContentSequence" in it:
            yield from walk_codes(it.ContentSequence)


def check_files_valid(paths):
    """dciodvfy without errors and pydicom for each; dsrdump for SRs."""
    assert paths, "no objects written"
    for p in paths:
        ds = pydicom.dcmread(p)
        r = subprocess.run(["dciodvfy", p], capture_output=True, text=True, timeout=60)
        errors = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.startswith("Error")]
        assert not errors, f"dciodvfy {p}: {errors[:5]}"
        if ds.SOPClassUID in SR_CLASSES:
            r = subprocess.run(["dsrdump", p], capture_output=True, text=True, timeout=60)
            assert r.returncode == 0 and "Imaging Measurement Report" in r.stdout, \
                f"dsrdump {p}: {r.returncode} {r.stderr[-1000:]}"


# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------

@check
def end_to_end_into_orthanc(tmp):
    """storescu -> ctphased -> Orthanc: the SR names the phase with a
    99CTPHASE code and refers to the source series; K Secondary Captures;
    every object valid."""
    o = orthanc(tmp).start()
    files, study, series = phantom(tmp, 11)
    d = daemon(tmp, destinations=[f"{o.aet}@127.0.0.1:{o.dicom_port}"])
    try:
        push(d, files)
        job = d.wait_jobs(1)[0]
        assert job["state"] == "done", job
        rows = wait_outbound(d, all_sent, what="every object sent")
        kinds = [r["kind"] for r in rows]
        assert kinds.count("sr") == 1 and kinds.count("sc") == KEY_SLICES, kinds
        assert all(r["job_id"] == job["id"] and r["attempts"] == 1 for r in rows), rows
        # Orthanc has the study: the source images are not there, only ours.
        inst = o.instances_of_study(study)
        assert set(inst) == {r["sop_instance_uid"] for r in rows}, (set(inst), rows)
        srs = [u for u, (_, t) in inst.items() if t["SOPClassUID"] in SR_CLASSES]
        scs = [u for u, (_, t) in inst.items() if t["SOPClassUID"] in SC_CLASSES]
        assert len(srs) == 1 and len(scs) == KEY_SLICES, inst
        sr = pydicom.dcmread(io.BytesIO(o.file(inst[srs[0]][0])))
        assert sr.StudyInstanceUID == study and sr.SeriesInstanceUID != series
        assert sr.CompletionFlag == "COMPLETE" and sr.VerificationFlag == "UNVERIFIED"
        result = json.loads(job["result_json"])[0]
        phase_codes = [v for _, v in walk_codes(sr.ContentSequence)
                       if v.CodingSchemeDesignator == "99CTPHASE"]
        assert phase_codes, "no 99CTPHASE code in the SR"
        phases = {"noncon", "cm", "cmneph", "neph", "pyelo", "indeterminate"}
        values = [c.CodeValue for c in phase_codes if c.CodeValue in phases]
        assert values and set(values) == {result["phase"]}, (values, result["phase"])
        snomed = [v.CodeValue for _, v in walk_codes(sr.ContentSequence)
                  if v.CodingSchemeDesignator == "SCT"]
        assert {"399331006", "1331946003"} & set(snomed), snomed
        ev = sr.CurrentRequestedProcedureEvidenceSequence[0]
        assert ev.StudyInstanceUID == study
        ref = ev.ReferencedSeriesSequence[0]
        assert ref.SeriesInstanceUID == series
        sources = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files}
        refd = {r.ReferencedSOPInstanceUID for r in ref.ReferencedSOPSequence}
        assert refd and refd <= sources, (refd, sources)
        for u in scs:
            sc = pydicom.dcmread(io.BytesIO(o.file(inst[u][0])))
            assert sc.StudyInstanceUID == study and sc.BurnedInAnnotation == "YES"
            assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID in sources
        check_files_valid([os.path.join(d.data, r["path"]) for r in rows])
        # Logs and metrics.
        assert len(d.events(name="send_ok")) == len(rows)
        code, body = d.http("/metrics")
        assert f"ctphase_objects_sent_total {len(rows)}\n" in body, body
        assert 'ctphase_outbound{state="sent"} %d\n' % len(rows) in body
        code, body = d.http(f"/api/v1/jobs/{job['id']}")
        assert code == 200 and len(json.loads(body)["outbound"]) == len(rows)
    finally:
        assert d.stop() == 0


@check
def pacs_down_then_back_everything_once(tmp):
    """Orthanc is down when the results are ready: the sender retries
    with backoff (logged), and when it comes back every object arrives
    exactly once."""
    o = orthanc(tmp)  # not started
    files, study, _ = phantom(tmp, 12)
    d = daemon(tmp, destinations=[f"{o.aet}@127.0.0.1:{o.dicom_port}"])
    try:
        push(d, files)
        d.wait_jobs(1)
        e = d.wait_event("send_retry", timeout=60)
        assert e["destination"] == f"{o.aet}@127.0.0.1:{o.dicom_port}" and e["error"], e
        rows = wait_outbound(d, lambda rs: all(r["attempts"] >= 2 for r in rs),
                             what="a second attempt")
        assert all(r["state"] in ("pending", "sending") and r["error"] for r in rows), rows
        assert "cannot associate" in rows[0]["error"], rows[0]["error"]
        o.start()
        rows = wait_outbound(d, all_sent, what="every object sent after Orthanc came back")
        inst = o.instances_of_study(study)
        assert sorted(inst) == sorted(r["sop_instance_uid"] for r in rows), (inst, rows)
        stats = o.get("/statistics")
        assert stats["CountInstances"] == len(rows), stats  # no duplicate
        assert len(d.events(name="send_retry")) >= len(rows)
    finally:
        assert d.stop() == 0
        o.stop()


@check
def same_series_twice_same_uids(tmp):
    """The same series processed twice (a second daemon, and a retry of
    the job) gives the same UIDs: Orthanc keeps one copy of each."""
    o = orthanc(tmp).start()
    files, study, _ = phantom(tmp, 13)
    dest = f"{o.aet}@127.0.0.1:{o.dicom_port}"
    d1 = daemon(tmp, name="d1", destinations=[dest])
    try:
        push(d1, files)
        job = d1.wait_jobs(1)[0]
        first = wait_outbound(d1, all_sent)
        # A retry of the job re-runs it: the rows are taken over and re-sent.
        p = subprocess.run([CTPHASE, "jobs", "retry", str(job["id"]), "--data-dir", d1.data],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        d1.wait_jobs(2)
        again = wait_outbound(d1, lambda rs: all_sent(rs) and all(r["job_id"] != job["id"]
                                                                  for r in rs))
        assert sorted(r["sop_instance_uid"] for r in again) == \
            sorted(r["sop_instance_uid"] for r in first)
    finally:
        assert d1.stop() == 0
    d2 = daemon(tmp, name="d2", destinations=[dest])
    try:
        push(d2, files)
        d2.wait_jobs(1)
        second = wait_outbound(d2, all_sent)
        assert sorted(r["sop_instance_uid"] for r in second) == \
            sorted(r["sop_instance_uid"] for r in first), "UIDs differ between runs"
        inst = o.instances_of_study(study)
        assert len(inst) == len(first), f"{len(inst)} instances in Orthanc, want {len(first)}"
        assert o.get("/statistics")["CountInstances"] == len(first)
    finally:
        assert d2.stop() == 0


@check
def refused_destinations_error_rows_receiving_unaffected(tmp):
    """A destination that rejects the association (wrong called AE) and
    one where nothing listens: clear error rows, retries up to
    send_max_attempts then failed; receiving goes on meanwhile."""
    o = orthanc(tmp, check_called_aet=True).start()
    dead = free_port()
    wrong = f"NOTORTHANC@127.0.0.1:{o.dicom_port}"
    nobody = f"NOBODY@127.0.0.1:{dead}"
    good = f"{o.aet}@127.0.0.1:{o.dicom_port}"
    # Two more peers, both ctphased: one accepts CT Image Storage only (no
    # context for SR and SC), one refuses non-CT objects with 0x0122.
    ct_only = st.Daemon(tmp, name="ctonly", config={
        "model": MODEL, "sop_classes": ["1.2.840.10008.5.1.4.1.1.2"]}).start()
    rejecting = st.Daemon(tmp, name="rejecting", config={
        "model": MODEL, "non_ct": "reject"}).start()
    no_ctx = f"CTPHASE@127.0.0.1:{ct_only.port}"
    refuses = f"CTPHASE@127.0.0.1:{rejecting.port}"
    files, study, _ = phantom(tmp, 14)
    d = daemon(tmp, destinations=[wrong, nobody, no_ctx, refuses, good],
               send_max_attempts=3)
    try:
        push(d, files)
        d.wait_jobs(1)
        rows = wait_outbound(d, lambda rs: all(r["state"] in ("sent", "failed") for r in rs),
                             what="every row sent or failed")
        by = {}
        for r in rows:
            by.setdefault(r["destination"], []).append(r)
        assert all(r["state"] == "sent" for r in by[good]), by[good]
        for dest in (wrong, nobody, no_ctx, refuses):
            assert all(r["state"] == "failed" and r["attempts"] == 3 for r in by[dest]), by[dest]
        err = by[wrong][0]["error"]
        assert "association rejected" in err and "called AE title" in err, err
        err = by[nobody][0]["error"]
        assert "cannot associate" in err and str(dead) in err, err
        err = by[no_ctx][0]["error"]
        assert "presentation context not accepted" in err, err
        err = by[refuses][0]["error"]
        assert "0x0122" in err and "SOP class not supported" in err, err
        assert d.events(name="send_failed") and d.events(name="send_retry")
        # Receiving is unaffected: another series is stored and processed.
        files2, _, _ = phantom(tmp, 15)
        push(d, files2)
        assert st.echoscu(d.port)[0] == 0
        jobs = d.wait_jobs(2)
        assert [j["state"] for j in jobs] == ["done", "done"], jobs
        code, body = d.http("/metrics")
        assert 'ctphase_outbound{state="failed"} 16\n' in body, body
        assert "ctphase_send_failures_total" in body
        # jobs show lists the rows with their errors.
        p = subprocess.run([CTPHASE, "jobs", "show", str(jobs[0]["id"]), "--data-dir", d.data],
                           capture_output=True, text=True)
        shown = json.loads(p.stdout)["outbound"]
        assert len(shown) == 20 and any("association rejected" in (r["error"] or "")
                                        for r in shown)
    finally:
        assert d.stop() == 0
        assert ct_only.stop() == 0 and rejecting.stop() == 0


@check
def resend_requeues_and_object_arrives(tmp):
    """ctphase jobs resend: the job's rows go back to pending and the
    objects arrive again (here: after they were deleted from Orthanc)."""
    o = orthanc(tmp).start()
    files, study, _ = phantom(tmp, 16)
    d = daemon(tmp, destinations=[f"{o.aet}@127.0.0.1:{o.dicom_port}"])
    try:
        push(d, files)
        job = d.wait_jobs(1)[0]
        rows = wait_outbound(d, all_sent)
        inst = o.instances_of_study(study)
        sr_uid = [r["sop_instance_uid"] for r in rows if r["kind"] == "sr"][0]
        o.delete(f"/instances/{inst[sr_uid][0]}")
        assert sr_uid not in o.instances_of_study(study)
        offset = os.path.getsize(d.log)
        p = subprocess.run([CTPHASE, "jobs", "resend", str(job["id"]), "--data-dir", d.data],
                           capture_output=True, text=True)
        assert p.returncode == 0 and f"{len(rows)} outbound" in p.stdout, (p.stdout, p.stderr)
        d.wait_event("send_ok", offset=offset, where=lambda e: e["sop_uid"] == sr_uid)
        rows = wait_outbound(d, all_sent)
        assert sr_uid in o.instances_of_study(study)
        p = subprocess.run([CTPHASE, "jobs", "resend", "999", "--data-dir", d.data],
                           capture_output=True, text=True)
        assert p.returncode == 1 and "999" in p.stderr, p
    finally:
        assert d.stop() == 0


@check
def folder_destination(tmp):
    """A "dir:" destination gets each object copied in atomically."""
    out = os.path.join(tmp, "results")
    files, _, _ = phantom(tmp, 17)
    d = daemon(tmp, destinations=[f"dir:{out}"])
    try:
        push(d, files)
        d.wait_jobs(1)
        rows = wait_outbound(d, all_sent)
        names = sorted(os.listdir(out))
        assert names == sorted(os.path.basename(r["path"]) for r in rows), names
        for n in names:
            assert pydicom.dcmread(os.path.join(out, n)).SOPInstanceUID + ".dcm" == n
    finally:
        assert d.stop() == 0


@check
def logs_have_no_patient_data(tmp):
    """Every daemon log of this run is JSON lines without the phantoms'
    PatientName or PatientID (the sender logs UIDs and destinations only).
    Runs last."""
    phi = set()
    for seed in (11, 12, 13, 14, 15, 16, 17):
        files, _, _ = phantom(tmp, seed)
        ds = pydicom.dcmread(files[0], stop_before_pixels=True)
        phi |= {str(ds.PatientName), str(ds.PatientID)}
    phi = {v for v in phi if len(v) >= 4}
    assert phi, "no patient attributes to look for"
    lines = 0
    for log in st.LOGS:
        if not os.path.exists(log):
            continue
        with open(log) as f:
            for line in f:
                json.loads(line)
                lines += 1
                for v in phi:
                    assert v not in line, f"{log}: patient data {v!r} in: {line}"
    if lines == 0:
        raise st.Skip("no daemon ran in this run (checks filtered out)")


def main():
    if not os.path.exists(st.CTPHASED):
        print(f"FAIL    delivery_build: {st.CTPHASED} is missing")
        print("0 passed, 1 failed, 0 skipped")
        return 1
    skip_all = None
    if not os.path.exists(ORTHANC):
        skip_all = "Orthanc is not installed"
    elif not shutil.which("dciodvfy"):
        skip_all = "dciodvfy (dicom3tools) is not installed"
    passed = failed = skipped = 0
    keep = tempfile.mkdtemp(prefix="ctphase-delivery-")
    wanted = sys.argv[2:]
    for fn in CHECKS:
        if wanted and not any(w in fn.__name__ for w in wanted):
            continue
        if skip_all:
            skipped += 1
            print(f"skip    delivery_{fn.__name__}: skipped: {skip_all}")
            continue
        tmp = tempfile.mkdtemp(dir=keep)
        t0 = time.time()
        try:
            fn(tmp)
            passed += 1
            print(f"ok      delivery_{fn.__name__} ({time.time() - t0:.1f} s)", flush=True)
        except st.Skip as e:
            skipped += 1
            print(f"skip    delivery_{fn.__name__}: skipped: {e}", flush=True)
        except Exception:
            failed += 1
            print(f"FAIL    delivery_{fn.__name__}", flush=True)
            traceback.print_exc(file=sys.stdout)
            for log in st.LOGS[-1:]:
                if os.path.exists(log):
                    print("--- last lines of", log)
                    print("".join(open(log).readlines()[-15:]))
        for dm in st.DAEMONS:
            if dm.proc and dm.proc.poll() is None:
                dm.proc.kill()
                dm.proc.wait()
        for o in ORTHANCS:
            o.stop()
    if not failed:
        shutil.rmtree(keep, ignore_errors=True)
    else:
        print(f"(test folders kept in {keep})")
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
