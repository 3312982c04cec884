#!/usr/bin/python3
"""service_test.py — ctphased, run as a PACS router would meet it.

Usage: tests/service_test.py BUILD_DIR

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
    """Runs storescu -v; returns (exit status, output)."""
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

    def __init__(self, port, called="CTPHASE", calling="RAWSCU", sop_class=CT_IMAGE):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=30)
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
