#!/usr/bin/python3
"""service_test.py — ctphased, run as a PACS router would meet it.

Usage: tests/service_test.py BUILD_DIR [NAME...]
(with names, only the checks whose names contain one of them)

Each check starts its own ctphased (port 0, so the kernel picks a free
port that the daemon logs; its own temporary data dir; stable_seconds 1)
and talks to it with DCMTK's echoscu and storescu over loopback, with a
small raw DICOM client below for what storescu refuses to send, with HTTP
for the admin API, and reads its SQLite database and log directly. The
daemon is stopped by PID. Prints one line per check and ends with
"N passed, N failed, N skipped".

CTPHASE_TEST_QUICK=1 (the sanitizer run) skips the large real series.
"""
import json
import os
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request

import pydicom
from pydicom.uid import generate_uid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build"))
CTPHASED = os.path.join(BUILD, "src", "service", "ctphased")
CTPHASE = os.path.join(BUILD, "src", "cli", "ctphase")
MODEL = os.path.join(ROOT, "tests", "reference", "fixtures", "b2_64_c1", "model.safetensors")
TWO_ACQ = os.path.join(ROOT, "tests", "corpus", "dicom", "two-acq")
HCC = os.path.join(ROOT, "..", "shared", "data", "real-ct", "hcc002-arterial-and-portal-venous")
QUICK = os.environ.get("CTPHASE_TEST_QUICK") == "1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
CHECKS = []
LOGS = []  # every daemon log of this run, for the PHI check at the end
DAEMONS = []  # every daemon started, stopped by PID if a check left it running
FINAL = []  # checks that must run last


class Skip(Exception):
    """A check that cannot run here; the message says why."""


def check(fn):
    CHECKS.append(fn)
    return fn


def final(fn):
    FINAL.append(fn)
    return fn


# ---------------------------------------------------------------------------
# The daemon
# ---------------------------------------------------------------------------

class Daemon:
    """One ctphased with its own data dir, log and config file."""

    def __init__(self, tmp, name="d", config=None, args=()):
        self.dir = os.path.join(tmp, name)
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "ctphased.log")
        self.out = os.path.join(self.dir, "stderr.txt")
        self.config = os.path.join(self.dir, "config.json")
        os.makedirs(self.dir, exist_ok=True)
        self.write_config(config or {})
        self.args = list(args)
        self.proc = None
        self.port = self.http_port = None
        LOGS.append(self.log)
        DAEMONS.append(self)

    def write_config(self, cfg):
        base = {"stable_seconds": 1, "min_free_bytes": 0, "model": MODEL,
                "admin_port": 0, "port": 0, "log_level": "debug",
                "log_file": self.log, "data_dir": self.data,
                "shutdown_grace_seconds": 20, "acse_timeout": 5, "dimse_timeout": 20}
        base.update(cfg)
        with open(self.config, "w") as f:
            json.dump(base, f)

    def start(self, timeout=30):
        offset = os.path.getsize(self.log) if os.path.exists(self.log) else 0
        err = open(self.out, "a")
        self.proc = subprocess.Popen([CTPHASED, "--foreground", "--config", self.config,
                                      *self.args], stdout=err, stderr=err)
        err.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            ev = {e["event"]: e for e in self.events(offset)}
            if "started" in ev:
                self.port = ev["scp_listening"]["port"]
                self.http_port = ev.get("http_listening", {}).get("port")
                return self
            if self.proc.poll() is not None:
                raise AssertionError(f"ctphased exited {self.proc.returncode}: "
                                     f"{open(self.out).read()[-2000:]}")
            time.sleep(0.05)
        raise AssertionError("ctphased did not start")

    def events(self, offset=0, name=None):
        if not os.path.exists(self.log):
            return []
        out = []
        with open(self.log) as f:
            f.seek(offset)
            for line in f:
                line = line.strip()
                if not line:
                    continue
                e = json.loads(line)  # every line must be one JSON object
                if name is None or e["event"] == name:
                    out.append(e)
        return out

    def wait_event(self, name, timeout=30, where=lambda e: True, offset=0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for e in self.events(offset, name):
                if where(e):
                    return e
            time.sleep(0.05)
        raise AssertionError(f"no {name} event within {timeout} s")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=40):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("ctphased did not stop within %d s of SIGTERM" % timeout)
        return self.proc.returncode if self.proc else None

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def db(self):
        con = sqlite3.connect(os.path.join(self.data, "ctphased.db"), timeout=10)
        con.row_factory = sqlite3.Row
        return con

    def query(self, sql, *args):
        con = self.db()
        try:
            return [dict(r) for r in con.execute(sql, args)]
        finally:
            con.close()

    def wait_jobs(self, n, timeout=120, states=("done", "failed", "skipped")):
        """Waits until n jobs have ended and no series is still pending."""
        deadline = time.time() + timeout
        marks = ",".join("?" * len(states))
        while time.time() < deadline:
            jobs = self.query(f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY id", *states)
            pending = self.query("SELECT count(*) AS n FROM series WHERE state IN "
                                 "('receiving','stable','queued','running')")[0]["n"]
            if len(jobs) >= n and pending == 0:
                return jobs
            if self.proc.poll() is not None:
                raise AssertionError(f"ctphased died: {open(self.out).read()[-2000:]}")
            time.sleep(0.1)
        raise AssertionError(f"fewer than {n} finished jobs after {timeout} s: "
                             f"{self.query('SELECT id, state, error FROM jobs')}")

    def http(self, path, method="GET"):
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", method=method)
        try:
            with urllib.request.urlopen(req, timeout=20) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()


def storescu(port, files, aet="STORESCU", aec="CTPHASE", extra=()):
    """Runs storescu -v, going on after a failed store (so its exit status
    is 0 even then: count the responses); returns (status, output)."""
    p = subprocess.run(["storescu", "-v", "-nh", "-aet", aet, "-aec", aec, *extra,
                        "127.0.0.1", str(port), *files],
                       capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, TCP_NODELAY="1"))
    return p.returncode, p.stdout + p.stderr


def echoscu(port, aet="ECHOSCU", aec="CTPHASE"):
    p = subprocess.run(["echoscu", "-aet", aet, "-aec", aec, "127.0.0.1", str(port)],
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


def successes(out):
    return out.count("Received Store Response (Success)")


def files_in(folder):
    return sorted(os.path.join(folder, f) for f in os.listdir(folder))


def make_series(folder, n, size=64, src=os.path.join(TWO_ACQ, "1-0.dcm"), acq=1):
    """Writes an axial series of n CT slices (size x size) from a template,
    with fresh UIDs and made-up patient attributes; returns the paths."""
    os.makedirs(folder, exist_ok=True)
    import numpy as np
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    paths = []
    for i in range(n):
        ds = pydicom.dcmread(src)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.FrameOfReferenceUID = frame
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientName, ds.PatientID = "Synthetic^Patient", "SYN-4711"
        ds.AcquisitionNumber, ds.InstanceNumber = acq, i + 1
        ds.ImagePositionPatient = [0.0, 0.0, float(i) * 2.5]
        ds.Rows = ds.Columns = size
        yy, xx = np.mgrid[0:size, 0:size]
        img = (1024 + 200 * np.sin(xx / 7.0 + i) * np.cos(yy / 9.0)).astype(np.uint16)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = img.tobytes()
        p = os.path.join(folder, f"{i:04d}.dcm")
        ds.save_as(p, write_like_original=False)
        paths.append(p)
    return paths


# ---------------------------------------------------------------------------
# A raw DICOM client, for datasets storescu refuses to send
# ---------------------------------------------------------------------------

def _item(kind, payload):
    return struct.pack(">BBH", kind, 0, len(payload)) + payload


def _uid(u):
    b = u.encode()
    return b + b"\0" if len(b) % 2 else b


def _elem(group, elem, value):
    return struct.pack("<HHI", group, elem, len(value)) + value


class RawAssociation:
    """A minimal Storage SCU: A-ASSOCIATE, C-STORE with any dataset bytes,
    A-RELEASE. Enough to send what a broken modality might send."""

    def __init__(self, port, called="CTPHASE", calling="RAWSCU", sop_class=CT_IMAGE,
                 host="127.0.0.1"):
        self.s = socket.create_connection((host, port), timeout=30)
        pc = bytes([1, 0, 0, 0]) + _item(0x30, sop_class.encode()) + \
            _item(0x40, EXPLICIT_LE.encode())
        user = _item(0x51, struct.pack(">I", 16384)) + _item(0x52, b"1.2.826.0.1.3680043.9.1")
        body = struct.pack(">HH", 1, 0) + called.ljust(16).encode() + \
            calling.ljust(16).encode() + bytes(32) + \
            _item(0x10, b"1.2.840.10008.3.1.1.1") + _item(0x20, pc) + _item(0x50, user)
        self.s.sendall(struct.pack(">BBI", 1, 0, len(body)) + body)
        kind, payload = self._pdu()
        self.accepted = kind == 2
        self.reject = payload if kind == 3 else None
        self.msg_id = 0

    def _recv(self, n):
        b = b""
        while len(b) < n:
            chunk = self.s.recv(n - len(b))
            if not chunk:
                raise ConnectionError("connection closed")
            b += chunk
        return b

    def _pdu(self):
        kind, _, length = struct.unpack(">BBI", self._recv(6))
        return kind, self._recv(length)

    def _pdata(self, control, data):
        pdv = struct.pack(">IB", len(data) + 2, 1) + bytes([control]) + data
        self.s.sendall(struct.pack(">BBI", 4, 0, len(pdv)) + pdv)

    def store(self, sop_instance, dataset_bytes, sop_class=CT_IMAGE):
        """Sends one C-STORE-RQ with the given dataset; returns the status."""
        self.msg_id += 1
        cmd = _elem(0, 0x0002, _uid(sop_class)) + _elem(0, 0x0100, struct.pack("<H", 1)) + \
            _elem(0, 0x0110, struct.pack("<H", self.msg_id)) + \
            _elem(0, 0x0700, struct.pack("<H", 0)) + _elem(0, 0x0800, struct.pack("<H", 0)) + \
            _elem(0, 0x1000, _uid(sop_instance))
        cmd = _elem(0, 0, struct.pack("<I", len(cmd))) + cmd
        self._pdata(0x03, cmd)
        for i in range(0, max(len(dataset_bytes), 1), 16000):
            chunk = dataset_bytes[i:i + 16000]
            self._pdata(0x02 if i + 16000 >= len(dataset_bytes) else 0x00, chunk)
        kind, payload = self._pdu()
        assert kind == 4, f"expected P-DATA, got PDU type {kind}"
        data = payload[6:]  # PDV length, context id, control
        pos = 0
        while pos + 8 <= len(data):
            group, elem, length = struct.unpack("<HHI", data[pos:pos + 8])
            if (group, elem) == (0, 0x0900):
                return struct.unpack("<H", data[pos + 8:pos + 10])[0]
            pos += 8 + length
        raise AssertionError("no status in the C-STORE-RSP")

    def release(self):
        self.s.sendall(struct.pack(">BBI", 5, 0, 4) + bytes(4))
        try:
            self._pdu()
        finally:
            self.s.close()


def dataset_bytes(ds):
    """The dataset (no meta header) in explicit VR little endian."""
    from pydicom.filewriter import write_dataset
    fp = pydicom.filebase.DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    return fp.getvalue()


# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------

@check
def config_schema_matches_file(tmp):
    p = subprocess.run([CTPHASED, "--print-schema"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    printed = json.loads(p.stdout)
    with open(os.path.join(ROOT, "schemas", "config.schema.json")) as f:
        on_disk = json.load(f)
    assert printed == on_disk, ("schemas/config.schema.json differs from "
                                "`ctphased --print-schema`: regenerate it")
    import jsonschema
    v = jsonschema.Draft202012Validator(printed)
    with open(os.path.join(ROOT, "deploy", "ctphased.example.json")) as f:
        example = json.load(f)
    errors = list(v.iter_errors(example))
    assert not errors, "deploy/ctphased.example.json: " + errors[0].message
    with open(os.path.join(ROOT, "docs", "operations.md")) as f:
        doc = f.read()
    missing = [k for k in printed["properties"] if f"`{k}`" not in doc]
    assert not missing, f"docs/operations.md does not document {missing}"
    # An empty file is valid and --check-config prints every key.
    empty = os.path.join(tmp, "empty.json")
    open(empty, "w").write("{}")
    p = subprocess.run([CTPHASED, "--check-config", "--config", empty,
                        "--set", f"model={MODEL}", "--port", "4104"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    eff = json.loads(p.stdout)
    assert set(eff) == set(printed["properties"]) and eff["port"] == 4104
    assert not list(v.iter_errors(eff)), "the effective config fails its own schema"
    # A bad key or value is refused with its name, exit status 78.
    for bad, word in (('{"stable_secs": 1}', "stable_secs"), ('{"port": -3}', "port"),
                      ('{"non_ct": "keep"}', "non_ct"), ('{"workers": "two"}', "workers")):
        open(empty, "w").write(bad)
        p = subprocess.run([CTPHASED, "--check-config", "--config", empty],
                           capture_output=True, text=True)
        assert p.returncode == 78 and word in p.stderr, (bad, p.returncode, p.stderr)


@check
def echo_and_association_policy(tmp):
    d = Daemon(tmp).start()
    try:
        rc, out = echoscu(d.port)
        assert rc == 0, out
        rc, out = echoscu(d.port, aec="NOTUS")
        assert rc != 0 and "Called AE Title Not Recognized" in out, out
        # Allowlists, changed at runtime with SIGHUP.
        d.write_config({"allowed_calling_ae": ["GOODSCU"]})
        offset = os.path.getsize(d.log)
        d.signal(signal.SIGHUP)
        d.wait_event("config_reloaded", offset=offset)
        assert echoscu(d.port, aet="GOODSCU")[0] == 0
        rc, out = echoscu(d.port, aet="BADSCU")
        assert rc != 0 and "Calling AE Title Not Recognized" in out, out
        d.write_config({"allowed_peers": ["10.0.0.0/8"]})
        offset = os.path.getsize(d.log)
        d.signal(signal.SIGHUP)
        d.wait_event("config_reloaded", offset=offset)
        rc, out = echoscu(d.port)
        assert rc != 0 and "Rejected Permanent" in out, out
        rej = d.events(name="assoc_rejected")
        assert {e["reason"] for e in rej} == {"called-ae", "calling-ae", "peer"}, rej
        assert all(e["peer"] == "127.0.0.1" for e in rej)
    finally:
        assert d.stop() == 0


def _ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as t:
            t.bind(("::1", 0))
        return True
    except OSError:
        return False


@check
def ipv6_listener_and_allowlist(tmp):
    if not _ipv6_loopback():
        raise Skip("no IPv6 loopback (::1) on this machine")
    # --check-config takes IPv6 addresses and blocks, and refuses a prefix
    # where an address is needed.
    cfg = os.path.join(tmp, "c.json")
    for ok, body in ((True, {"bind_address": "::1", "allowed_peers": ["fd00::/8", "::1"]}),
                     (False, {"bind_address": "::1/128"}),
                     (False, {"allowed_peers": ["fd00::/129"]})):
        json.dump(body, open(cfg, "w"))
        p = subprocess.run([CTPHASED, "--check-config", "--config", cfg, "--set",
                            f"model={MODEL}"], capture_output=True, text=True)
        assert (p.returncode == 0) == ok, (body, p.returncode, p.stderr)
    # A listener on ::1 stores over IPv6 and names the peer ::1.
    d = Daemon(tmp, "v6", config={"bind_address": "::1", "allowed_peers": ["::1"]}).start()
    try:
        assert d.wait_event("scp_listening")["address"] == "::1"
        ds = pydicom.dcmread(make_series(os.path.join(tmp, "s"), 1, size=32)[0])
        raw = RawAssociation(d.port, host="::1")
        assert raw.accepted, raw.reject
        assert raw.store(ds.SOPInstanceUID, dataset_bytes(ds)) == 0
        raw.release()
        assert [e["peer"] for e in d.events(name="assoc_open")] == ["::1"]
        assert d.query("SELECT count(*) AS n FROM instances")[0]["n"] == 1
        # Not reachable over IPv4.
        assert echoscu(d.port)[0] != 0
    finally:
        assert d.stop() == 0
    # "::" takes both families; IPv4 peers arrive IPv4-mapped, are logged
    # as IPv4 and match IPv4 entries only.
    d = Daemon(tmp, "dual", config={"bind_address": "::", "allowed_peers": ["127.0.0.0/8"]})
    d.start()
    try:
        rc, out = echoscu(d.port)
        assert rc == 0, out
        raw = RawAssociation(d.port, host="::1")
        assert not raw.accepted
        d.write_config({"bind_address": "::", "allowed_peers": ["::1"]})
        offset = os.path.getsize(d.log)
        d.signal(signal.SIGHUP)
        d.wait_event("config_reloaded", offset=offset)
        rc, out = echoscu(d.port)
        assert rc != 0 and "Rejected Permanent" in out, out
        raw = RawAssociation(d.port, host="::1")
        assert raw.accepted, raw.reject
        raw.release()
        assert [e["peer"] for e in d.events(name="assoc_open")] == ["127.0.0.1", "::1"]
        assert sorted(e["peer"] for e in d.events(name="assoc_rejected")) == \
            ["127.0.0.1", "::1"]
    finally:
        assert d.stop() == 0


@check
def folder_removed_behind_our_back_is_made_again(tmp):
    d = Daemon(tmp).start()
    try:
        files = make_series(os.path.join(tmp, "s"), 2, size=32)
        assert successes(storescu(d.port, files[:1])[1]) == 1
        study = pydicom.dcmread(files[0]).StudyInstanceUID
        shutil.rmtree(os.path.join(d.data, "instances", study))
        assert successes(storescu(d.port, files[1:])[1]) == 1
        assert len(d.events(name="store_folder_missing")) == 1
        sop = pydicom.dcmread(files[1]).SOPInstanceUID
        path = d.query("SELECT path FROM instances WHERE sop_instance_uid = ?", sop)[0]["path"]
        assert os.path.exists(os.path.join(d.data, path))
    finally:
        assert d.stop() == 0


@check
def association_limit_and_stalled_peer(tmp):
    d = Daemon(tmp, config={"max_associations": 1, "acse_timeout": 2}).start()
    try:
        held = RawAssociation(d.port)
        assert held.accepted, held.reject
        rc, out = echoscu(d.port)
        assert rc != 0 and "Local Limit Exceeded" in out, out
        held.release()
        deadline = time.time() + 10
        while echoscu(d.port)[0] != 0:
            assert time.time() < deadline, "the slot was not freed"
            time.sleep(0.2)
        # A peer that connects and sends nothing is dropped after the ACSE
        # timeout, without holding up others.
        t0 = time.time()
        s = socket.create_connection(("127.0.0.1", d.port))
        assert echoscu(d.port)[0] == 0, "a silent peer blocked the next association"
        s.settimeout(30)
        assert s.recv(10) == b"", "the silent connection was not closed"
        assert time.time() - t0 < 10
        s.close()
        d.wait_event("assoc_dropped")
    finally:
        assert d.stop() == 0


@check
def small_series_stored_once_and_processed(tmp):
    d = Daemon(tmp).start()
    try:
        files = files_in(TWO_ACQ)
        rc, out = storescu(d.port, files)
        assert rc == 0 and successes(out) == 8, out
        rc, out = storescu(d.port, files)  # the same instances again
        assert rc == 0 and successes(out) == 8, out
        jobs = d.wait_jobs(1)
        rows = d.query("SELECT * FROM instances")
        assert len(rows) == 8, f"{len(rows)} instance rows, want 8 (stored once)"
        on_disk = [r["path"] for r in rows if os.path.exists(os.path.join(d.data, r["path"]))]
        assert len(on_disk) == 8
        for r in rows:
            assert r["path"] == "instances/%s/%s/%s.dcm" % (r["study_uid"], r["series_uid"],
                                                            r["sop_instance_uid"])
            ds = pydicom.dcmread(os.path.join(d.data, r["path"]))
            assert ds.SOPInstanceUID == r["sop_instance_uid"]
        assert len(jobs) == 1 and jobs[0]["state"] == "done", jobs
        result = json.loads(jobs[0]["result_json"])
        assert [a["acquisition_number"] for a in result] == [1, 2], result
        assert all(a["slices_used"] == 4 for a in result)
        assert jobs[0]["model_sha256"] and len(jobs[0]["model_sha256"]) == 64
        assert not os.listdir(os.path.join(d.data, "tmp")), "temporary files left"
        # The admin API agrees.
        uid = rows[0]["series_uid"]
        st, body = d.http(f"/api/v1/series/{uid}")
        assert st == 200 and json.loads(body)["state"] == "done", body
        st, body = d.http("/api/v1/jobs")
        assert st == 200 and json.loads(body)[0]["state"] == "done"
        st, body = d.http(f"/api/v1/jobs/{jobs[0]['id']}")
        assert st == 200 and len(json.loads(body)["result"]) == 2
        st, body = d.http("/metrics")
        assert st == 200
        assert "ctphase_instances_received_total 8\n" in body, body
        assert "ctphase_instances_duplicate_total 8\n" in body
        assert 'ctphase_jobs{state="done"} 1\n' in body
        assert 'ctphase_series{state="done"} 1\n' in body
        for name in ("ctphase_received_bytes_total", "ctphase_associations_total",
                     "ctphase_job_seconds_bucket", "ctphase_inference_seconds_count",
                     "ctphase_queue_depth", "ctphase_disk_free_bytes",
                     "ctphase_send_failures_total", "ctphase_store_seconds_sum"):
            assert name in body, name
        # More instances after the job ran: the series is processed again.
        extra = make_series(os.path.join(tmp, "more"), 2, size=16)
        for p in extra:
            ds = pydicom.dcmread(p)
            ds.StudyInstanceUID, ds.SeriesInstanceUID = rows[0]["study_uid"], uid
            ds.AcquisitionNumber = 3
            ds.save_as(p)
        rc, out = storescu(d.port, extra)
        assert rc == 0, out
        jobs = d.wait_jobs(2)
        assert len(jobs) == 2 and jobs[1]["instances"] == 10, jobs
    finally:
        assert d.stop() == 0


@check
def http_bad_requests_get_4xx(tmp):
    d = Daemon(tmp).start()
    try:
        assert d.http("/healthz") == (200, "ok\n")
        assert d.http("/nope")[0] == 404
        assert d.http("/metrics", method="POST")[0] == 405
        assert d.http("/api/v1/jobs/12x")[0] == 404
        assert d.http("/api/v1/jobs/999")[0] == 404
        assert d.http("/api/v1/jobs?state=bogus")[0] == 400
        assert d.http("/api/v1/series/1.2.3.4")[0] == 404
        assert d.http("/api/v1/series/1..2")[0] == 400
        assert d.http("/api/v1/series/%2e%2e%2fetc")[0] == 400
        for raw, code in ((b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n", b"431"),
                          (b"\x00\x01\x02 garbage\r\n\r\n", b"400"),
                          (b"GET\r\n\r\n", b"400")):
            s = socket.create_connection(("127.0.0.1", d.http_port), timeout=20)
            try:
                s.sendall(raw)
            except OSError:
                pass
            reply = s.recv(100)
            s.close()
            assert reply.startswith(b"HTTP/1.1 " + code), (raw[:20], reply)
        assert d.http("/healthz")[0] == 200, "the daemon must survive bad requests"
    finally:
        assert d.stop() == 0


@check
def real_series_and_four_parallel_pushes(tmp):
    if not os.path.isdir(HCC):
        raise Skip("../shared/data/real-ct/hcc002-arterial-and-portal-venous is absent")
    if QUICK:
        raise Skip("large real series not run under the sanitizers")
    files = files_in(HCC)
    assert len(files) == 218
    d = Daemon(tmp, config={"workers": 1}).start()
    try:
        results = [None] * 4

        def push(k):
            results[k] = storescu(d.port, files[k::4], aet=f"SCU{k}")
        threads = [threading.Thread(target=push, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for k, (rc, out) in enumerate(results):
            assert rc == 0 and successes(out) == len(files[k::4]), out[-2000:]
        opened = d.events(name="assoc_open")
        assert len({e["calling_ae"] for e in opened}) == 4
        jobs = d.wait_jobs(1, timeout=300)
        assert len(jobs) == 1, "one series, one job"
        assert d.query("SELECT count(*) AS n FROM instances")[0]["n"] == 218
        result = json.loads(jobs[0]["result_json"])
        assert [a["acquisition_number"] for a in result] == [1, 2], result
        assert [a["slices_used"] for a in result] == [109, 109]
    finally:
        assert d.stop() == 0


@check
def parallel_pushes_of_small_series(tmp):
    d = Daemon(tmp, config={"workers": 2}).start()
    try:
        series = [make_series(os.path.join(tmp, f"s{k}"), 6, size=32) for k in range(4)]
        results = [None] * 4

        def push(k):
            results[k] = storescu(d.port, series[k], aet=f"SCU{k}")
        threads = [threading.Thread(target=push, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for rc, out in results:
            assert rc == 0 and successes(out) == 6, out
        jobs = d.wait_jobs(4)
        assert len(jobs) == 4 and all(j["state"] == "done" for j in jobs), jobs
        assert d.query("SELECT count(*) AS n FROM instances")[0]["n"] == 24
    finally:
        assert d.stop() == 0


@check
def kill9_sigterm_and_recovery(tmp):
    files = make_series(os.path.join(tmp, "big"), 160, size=256)
    d = Daemon(tmp, config={"shutdown_grace_seconds": 1, "inference_threads": 1}).start()
    proc = subprocess.Popen(["storescu", "-v", "-aec", "CTPHASE", "127.0.0.1", str(d.port),
                             *files], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        if d.query("SELECT count(*) AS n FROM instances")[0]["n"] >= 100:
            break
        time.sleep(0.01)
    d.kill9()
    out, _ = proc.communicate(timeout=60)
    acked = successes(out)
    assert 100 <= acked < len(files), f"{acked} acknowledged: the kill came too late"
    # Every acknowledged instance is in the database and on disk, intact.
    for p in files[:acked]:
        uid = pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID
        rows = d.query("SELECT path FROM instances WHERE sop_instance_uid = ?", uid)
        assert rows, f"acknowledged instance {uid} lost"
        stored = pydicom.dcmread(os.path.join(d.data, rows[0]["path"]))
        assert stored.PixelData == pydicom.dcmread(p).PixelData
    # Restart: the leftovers of the interrupted store go, the series is processed.
    d.start()
    assert not os.listdir(os.path.join(d.data, "tmp"))
    job = d.wait_event("job_start", timeout=60)
    # SIGTERM during the job, with a 1 s grace: the job is re-queued.
    t0 = time.time()
    assert d.stop() == 0
    assert time.time() - t0 < 15, "shutdown took longer than the grace time allows"
    forced = d.events(name="shutdown_forced")
    if forced and forced[-1]["jobs_requeued"]:  # still running after the grace time
        assert d.query("SELECT state FROM jobs WHERE id = ?", job["job"])[0]["state"] == "queued"
    d.start()
    jobs = d.wait_jobs(1, timeout=180)
    assert jobs[-1]["state"] == "done", jobs
    stored = d.query("SELECT count(*) AS n FROM instances")[0]["n"]
    assert stored >= acked
    result = json.loads(jobs[-1]["result_json"])
    assert result[0]["slices_used"] == stored, (result[0]["slices_used"], stored)
    assert d.stop() == 0


@check
def rows_lost_to_power_loss_are_reconciled(tmp):
    """Instance rows are committed without a WAL fsync of their own (the
    fsynced file is the durable record), so a power loss may lose the last
    rows of acknowledged instances. Simulated here by deleting them while
    the daemon is down: at restart every file gets its row back, exactly
    once, and the series is processed with all its slices. A file that is
    not an instance of its folder is left alone."""
    files = make_series(os.path.join(tmp, "s"), 12, size=32)
    d = Daemon(tmp, config={"stable_seconds": 3600}).start()
    rc, out = storescu(d.port, files)
    assert rc == 0 and successes(out) == 12, out
    rows = d.query("SELECT * FROM instances ORDER BY sop_instance_uid")
    assert len(rows) == 12
    d.kill9()
    # The power loss: the last 5 rows of the series, or the whole series.
    con = d.db()
    lost = [r["sop_instance_uid"] for r in rows[:5]]
    con.executemany("DELETE FROM instances WHERE sop_instance_uid = ?", [(u,) for u in lost])
    con.commit()
    con.close()
    study, series = rows[0]["study_uid"], rows[0]["series_uid"]
    foreign = os.path.join(d.data, "instances", study, series, "1.2.3.4.dcm")
    with open(foreign, "wb") as f:
        f.write(b"not DICOM")
    d.write_config({"stable_seconds": 1})
    offset = os.path.getsize(d.log)
    d.start()
    e = d.wait_event("reconciled", offset=offset)
    assert e["rows_added"] == 5 and e["foreign"] == 1 and e["failed"] == 0, e
    back = d.query("SELECT * FROM instances ORDER BY sop_instance_uid")
    assert [r["sop_instance_uid"] for r in back] == [r["sop_instance_uid"] for r in rows]
    for a, b in zip(rows, back):
        assert (a["path"], a["bytes"], a["sop_class_uid"], a["transfer_syntax"]) == \
            (b["path"], b["bytes"], b["sop_class_uid"], b["transfer_syntax"]), (a, b)
    assert os.path.exists(foreign), "a file ctphased did not write was removed"
    jobs = d.wait_jobs(1)
    assert jobs[-1]["state"] == "done", jobs
    assert json.loads(jobs[-1]["result_json"])[0]["slices_used"] == 12
    # A resend of a reconciled instance is a duplicate, stored once.
    rc, out = storescu(d.port, files[:3])
    assert successes(out) == 3 and len(d.query("SELECT 1 FROM instances")) == 12
    # The whole series lost (rows and series row): it comes back too.
    assert d.stop() == 0
    con = d.db()
    con.execute("DELETE FROM jobs")
    con.execute("DELETE FROM instances")
    con.execute("DELETE FROM series")
    con.commit()
    con.close()
    offset = os.path.getsize(d.log)
    d.start()
    e = d.wait_event("reconciled", offset=offset)
    assert e["rows_added"] == 12, e
    assert d.wait_jobs(1)[-1]["state"] == "done"
    assert d.stop() == 0


@check
def injected_write_failures_answer_a700_and_leave_nothing(tmp):
    """CTPHASED_FAIL_AFTER=N fails the Nth durable step of keeping an
    instance (mkdir, rename, folder fsync, commit): each answers 0xA700 and
    leaves no file and no row; the resend then succeeds, stored once."""
    files = make_series(os.path.join(tmp, "s"), 2, size=32)
    for n, step in enumerate(("mkdir", "rename", "fsync", "commit"), 1):
        os.environ["CTPHASED_FAIL_AFTER"] = str(n)
        try:
            d = Daemon(tmp, name=f"d{n}").start()
        finally:
            del os.environ["CTPHASED_FAIL_AFTER"]
        try:
            d.wait_event("failure_injection")
            rc, out = storescu(d.port, files[:1])
            assert "Refused: OutOfResources" in out and successes(out) == 0, out
            e = d.wait_event("store_failed")
            assert e["step"] == step, (step, e)
            assert d.query("SELECT count(*) AS n FROM instances")[0]["n"] == 0
            left = [f for r, _, fs in os.walk(os.path.join(d.data, "instances")) for f in fs]
            left += os.listdir(os.path.join(d.data, "tmp"))
            assert not left, f"step {step}: files left behind: {left}"
            rc, out = storescu(d.port, files)
            assert successes(out) == 2, out
            assert d.query("SELECT count(*) AS n FROM instances")[0]["n"] == 2
        finally:
            assert d.stop() == 0


@check
def disk_watermark_refuses_and_recovers(tmp):
    files = make_series(os.path.join(tmp, "s"), 3, size=32)
    d = Daemon(tmp, config={"min_free_bytes": 10 ** 15}).start()
    try:
        rc, out = storescu(d.port, files)
        assert out.count("Refused: OutOfResources") == 3, out
        assert successes(out) == 0
        assert d.query("SELECT count(*) AS n FROM instances")[0]["n"] == 0
        left = [os.path.join(r, f) for r, _, fs in os.walk(d.data) for f in fs
                if "instances" in r or r.endswith("tmp")]
        assert not left, f"files left behind: {left}"
        e = d.wait_event("store_refused")
        assert e["status"] == "0xA700" and "watermark" in e["reason"]
        # Space comes back (the watermark is lowered) and SIGHUP reloads it.
        d.write_config({"min_free_bytes": 0})
        offset = os.path.getsize(d.log)
        d.signal(signal.SIGHUP)
        d.wait_event("config_reloaded", offset=offset)
        rc, out = storescu(d.port, files)
        assert rc == 0 and successes(out) == 3, out
        assert d.wait_jobs(1)[0]["state"] == "done"
    finally:
        assert d.stop() == 0


@check
def malformed_datasets_get_failure_status(tmp):
    d = Daemon(tmp).start()
    try:
        src = os.path.join(TWO_ACQ, "1-0.dcm")
        # storescu sends these; dcmodify makes them.
        cases = {}
        for name, args in (("bad-uid", ["-m", "(0008,0018)=1.2.3.abc"]),
                           ("no-series", ["-e", "(0020,000e)"]),
                           ("short-pixels", ["-m", "(0028,0010)=512"])):
            p = os.path.join(tmp, name + ".dcm")
            shutil.copy(src, p)
            if name != "bad-uid":
                args = args + ["-m", "(0008,0018)=" + generate_uid()]
            subprocess.run(["dcmodify", "-nb", "-ie", *args, p], check=True,
                           capture_output=True)
            cases[name] = p
        for name, p in cases.items():
            rc, out = storescu(d.port, [p], extra=["-up"])
            assert successes(out) == 0, (name, out)
            assert "Received Store Response" in out, (name, out)
        # What storescu will not send: a CT dataset without SOPInstanceUID,
        # and bytes that are no dataset at all.
        ds = pydicom.dcmread(src)
        good_uid = generate_uid()
        raw = RawAssociation(d.port)
        assert raw.accepted
        del ds.SOPInstanceUID
        assert raw.store(good_uid, dataset_bytes(ds)) in (0xA900, 0xC000)
        assert raw.store(generate_uid(), os.urandom(3000)) in (0xA900, 0xC000)
        assert raw.store(generate_uid(), b"\x08\x00\x18\x00UI\xff\xff") in (0xA900, 0xC000)
        ds = pydicom.dcmread(src)
        ds.SOPInstanceUID = good_uid
        assert raw.store(good_uid, dataset_bytes(ds)) == 0, "a good one still succeeds"
        raw.release()
        refusals = d.events(name="store_refused")
        assert len(refusals) >= 6, refusals
        assert all(e.get("msg") or e.get("reason") for e in refusals)
        assert d.query("SELECT count(*) AS n FROM instances")[0]["n"] == 1
        assert echoscu(d.port)[0] == 0, "the daemon must keep serving"
        assert not os.listdir(os.path.join(d.data, "tmp"))
    finally:
        assert d.stop() == 0


@check
def non_ct_dropped_or_refused(tmp):
    ds = pydicom.dcmread(os.path.join(TWO_ACQ, "1-0.dcm"))
    sc = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sc
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    p = os.path.join(tmp, "sc.dcm")
    ds.save_as(p)
    d = Daemon(tmp).start()
    try:
        rc, out = storescu(d.port, [p])
        assert rc == 0 and successes(out) == 1, out  # acknowledged...
        assert d.query("SELECT count(*) AS n FROM instances")[0]["n"] == 0  # ...dropped
        d.write_config({"non_ct": "reject"})
        offset = os.path.getsize(d.log)
        d.signal(signal.SIGHUP)
        d.wait_event("config_reloaded", offset=offset)
        rc, out = storescu(d.port, [p])
        assert "Refused: SOPClassNotSupported" in out and successes(out) == 0, out
    finally:
        assert d.stop() == 0


@check
def retention_removes_files_keeps_records(tmp):
    d = Daemon(tmp, config={"retention_seconds": 0}).start()
    try:
        files = make_series(os.path.join(tmp, "s"), 4, size=32)
        assert storescu(d.port, files)[0] == 0
        d.wait_jobs(1)
        d.wait_event("retention_removed")
        rows = d.query("SELECT * FROM instances")
        assert len(rows) == 4 and all(r["removed_at"] for r in rows)
        assert not any(os.path.exists(os.path.join(d.data, r["path"])) for r in rows)
        assert d.query("SELECT files_removed FROM series")[0]["files_removed"] == 1
        assert d.query("SELECT state FROM jobs")[0]["state"] == "done"
        # The emptied series and study folders are gone too.
        assert os.listdir(os.path.join(d.data, "instances")) == []
        assert d.events(name="retention_removed")[0]["folders"] == 1
        # Sent again: stored again, into folders made again (the durable-
        # folder table forgot them), with no retry or failure.
        offset = os.path.getsize(d.log)
        assert successes(storescu(d.port, files)[1]) == 4
        assert len(d.events(offset, name="instance_stored")) == 4
        assert not d.events(offset, name="store_folder_missing")
        assert not d.events(offset, name="store_failed")
    finally:
        assert d.stop() == 0


@check
def jobs_cli(tmp):
    p = subprocess.run([CTPHASE, "jobs", "--help"], capture_output=True, text=True)
    if p.returncode != 0 or "usage: ctphase jobs" not in p.stdout:
        raise Skip("`ctphase jobs` is not wired into src/cli/main.c in this build")
    d = Daemon(tmp).start()
    try:
        files = make_series(os.path.join(tmp, "s"), 3, size=32)
        assert storescu(d.port, files)[0] == 0
        job = d.wait_jobs(1)[0]
        p = subprocess.run([CTPHASE, "jobs", "list", "--data-dir", d.data],
                           capture_output=True, text=True)
        assert p.returncode == 0 and "done" in p.stdout and job["series_uid"] in p.stdout, p
        p = subprocess.run([CTPHASE, "jobs", "list", "--json", "--data-dir", d.data],
                           capture_output=True, text=True)
        assert json.loads(p.stdout)[0]["id"] == job["id"]
        p = subprocess.run([CTPHASE, "jobs", "show", str(job["id"]), "--data-dir", d.data],
                           capture_output=True, text=True)
        assert p.returncode == 0 and json.loads(p.stdout)["result"][0]["slices_used"] == 3
        p = subprocess.run([CTPHASE, "jobs", "retry", str(job["id"]), "--data-dir", d.data],
                           capture_output=True, text=True)
        assert p.returncode == 0 and "queued" in p.stdout, p
        jobs = d.wait_jobs(2)
        assert [j["state"] for j in jobs] == ["done", "done"]
        p = subprocess.run([CTPHASE, "jobs", "show", "999", "--data-dir", d.data],
                           capture_output=True, text=True)
        assert p.returncode == 1 and "999" in p.stderr
        p = subprocess.run([CTPHASE, "jobs", "list", "--data-dir", os.path.join(tmp, "none")],
                           capture_output=True, text=True)
        assert p.returncode == 1
    finally:
        assert d.stop() == 0


@final
def logs_have_no_patient_data(tmp):
    """Every log line of this run is JSON and carries no PatientName,
    PatientID or PatientBirthDate of the data that was sent."""
    sources = files_in(TWO_ACQ) + [make_series(os.path.join(tmp, "s"), 1)[0]]
    if os.path.isdir(HCC):
        sources.append(files_in(HCC)[0])
    phi = set()
    for p in sources:
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        for key in ("PatientName", "PatientID", "PatientBirthDate"):
            v = str(ds.get(key, "") or "")
            if len(v) >= 4:
                phi.add(v)
    assert phi, "no patient attributes to look for"
    lines = 0
    for log in LOGS:
        if not os.path.exists(log):
            continue
        with open(log) as f:
            for line in f:
                json.loads(line)
                lines += 1
                for v in phi:
                    assert v not in line, f"{log}: patient data {v!r} in: {line}"
    assert lines > 100, f"only {lines} log lines: the checks did not run?"


def main():
    passed = failed = skipped = 0
    if not os.path.exists(CTPHASED):
        print(f"FAIL    service_build: {CTPHASED} is missing")
        print("0 passed, 1 failed, 0 skipped")
        return 1
    keep = tempfile.mkdtemp(prefix="ctphased-test-")
    wanted = sys.argv[2:]
    for fn in CHECKS + FINAL:
        if wanted and not any(w in fn.__name__ for w in wanted):
            continue
        tmp = tempfile.mkdtemp(dir=keep)
        t0 = time.time()
        try:
            fn(tmp) if fn.__code__.co_argcount else fn()
            passed += 1
            print(f"ok      service_{fn.__name__} ({time.time() - t0:.1f} s)", flush=True)
        except Skip as e:
            skipped += 1
            print(f"skip    service_{fn.__name__}: skipped: {e}", flush=True)
        except Exception:
            failed += 1
            print(f"FAIL    service_{fn.__name__}", flush=True)
            traceback.print_exc(file=sys.stdout)
            for log in LOGS[-1:]:
                if os.path.exists(log):
                    print("--- last lines of", log)
                    print("".join(open(log).readlines()[-15:]))
        # A daemon that a failed check left running is stopped by its PID.
        for dm in DAEMONS:
            if dm.proc and dm.proc.poll() is None:
                dm.proc.kill()
                dm.proc.wait()
    if not failed:
        shutil.rmtree(keep, ignore_errors=True)
    else:
        print(f"(test folders kept in {keep})")
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
