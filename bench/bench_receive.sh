#!/usr/bin/env bash
# bench_receive.sh — how fast ctphased receives, against DCMTK's storescp.
#
#   bench/bench_receive.sh [BUILD_DIR] [FILES]
#
# 1. Receive throughput. The same FILES (default 300) CT instances of
#    512x512 (about 0.5 MB each; made from the HCC_002 slices when
#    ../shared/data/real-ct is there, else synthetic) are pushed with one
#    storescu to storescp (writing files, no fsync) and to ctphased (file
#    fsync, rename, folder fsync, SQLite commit per instance before each
#    response), then with 4 storescu at once to each. Prints files/s, MB/s
#    and the ratio ctphased / storescp (target: >= 0.9). Each push starts
#    after a sync (see push below). The disk and the 2 cores may be shared:
#    run it a few times and compare ratios from the same run only.
#    Then the durability floor on the same disk (bench/bench_durable.c):
#    for the same files, one at a time, the mean ms per instance of
#    (a) ctphased's sequence (new file, fsync, rename, folder fsync) and
#    (b) a write into a preallocated, fsynced journal file with one
#    fdatasync; and the best receive-throughput ratio a receiver doing
#    storescp's work plus (a), or plus (b), could reach on one
#    association: t_storescp / (t_storescp + t_a) (and t_b), next to the
#    measured ctphased/storescp ratio.
# 2. Latency. A 100-slice series is pushed to a fresh ctphased; prints the
#    time from the last instance's response to its job's end, minus
#    stable_seconds (what the service adds beyond the wait it is told to do),
#    and the job's own duration; then `ctphase predict` on the same files
#    (same model, all cores) and the ratio of the two (target: <= 1.3).
#
# Both receivers run on loopback on this machine; storescu runs with
# TCP_NODELAY=1 for both (DCMTK's client otherwise adds ~40 ms per instance
# of Nagle/delayed-ACK waiting, which would hide the receivers' costs).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=$(cd "${1:-build}" && pwd)
NFILES=${2:-300}
CTPHASED=$BUILD/src/service/ctphased
DURABLE=$BUILD/bench/bench_durable
MODEL=${CTPHASE_MODEL:-$ROOT/tests/reference/fixtures/b2_64_c1/model.safetensors}
HCC=$ROOT/../shared/data/real-ct/hcc002-arterial-and-portal-venous
PY=/usr/bin/python3
STABLE=2
export TCP_NODELAY=1

[ -x "$CTPHASED" ] || { echo "no $CTPHASED: build first"; exit 1; }
[ -x "$DURABLE" ] || { echo "no $DURABLE: build first"; exit 1; }
command -v storescp >/dev/null || { echo "storescp (dcmtk) is missing"; exit 1; }

WORK=$(mktemp -d /tmp/bench-receive-XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- the files ------------------------------------------------------------
$PY - "$WORK/in" "$NFILES" "$HCC" "$ROOT/tests/corpus/dicom/two-acq/1-0.dcm" <<'EOF'
import os, sys
import numpy as np
import pydicom
from pydicom.uid import generate_uid
out, n, hcc, fallback = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
os.makedirs(out)
templates = sorted(os.path.join(hcc, f) for f in os.listdir(hcc)) if os.path.isdir(hcc) else []
study = generate_uid()
series = [generate_uid() for _ in range((n + 99) // 100)]
for i in range(n):
    ds = pydicom.dcmread(templates[i % len(templates)] if templates else fallback)
    if not templates:  # a synthetic 512x512 slice
        yy, xx = np.mgrid[0:512, 0:512]
        ds.Rows = ds.Columns = 512
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = (1024 + 300 * np.sin(xx / 9.0 + i) * np.cos(yy / 13.0)).astype(np.uint16).tobytes()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series[i // 100]
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.AcquisitionNumber, ds.InstanceNumber = 1, i % 100 + 1
    ds.ImagePositionPatient = [-250.0, -250.0, 2.5 * (i % 100)]
    ds.save_as(os.path.join(out, f"{i:04d}.dcm"), write_like_original=False)
EOF
FILES=("$WORK"/in/*.dcm)
MB=$(du -sm "$WORK/in" | cut -f1)
echo "files: ${#FILES[@]} CT instances, ${MB} MB ($( [ -d "$HCC" ] && echo "HCC_002 slices" || echo synthetic), 100 per series)"

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# push AET PORT PARALLEL -> seconds to send every file (PARALLEL storescu
# processes, each with every PARALLEL-th file). The file system is synced
# first: storescp leaves ~150 MB of dirty pages behind (it never flushes),
# and whoever fsyncs next on the same file system would pay for writing
# them out (an ext4 journal commit waits for them), so each receiver starts
# from a clean page cache and pays only for its own writes.
push() {
  local aec=$1 port=$2 par=$3 k rc=0 t0 t1 pids=()
  sync
  t0=$(date +%s.%N)
  for ((k = 0; k < par; k++)); do
    storescu -aec "$aec" 127.0.0.1 "$port" \
      $(printf '%s\n' "${FILES[@]}" | awk -v k=$k -v p=$par 'NR % p == k') &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  t1=$(date +%s.%N)
  [ $rc = 0 ] || { echo "storescu failed" >&2; return 1; }
  echo "$t1 - $t0" | bc -l
}

start_storescp() { # dir port
  storescp -aet STORESCP -od "$1" "$2" >/dev/null 2>&1 &
  PIDS+=($!)
  sleep 0.5
}

start_ctphased() { # datadir stable -> sets CT_PORT, CT_HTTP, CT_PID
  mkdir -p "$1"
  "$CTPHASED" --foreground --data-dir "$1" --port 0 --set admin_port=0 \
    --set model="$MODEL" --set stable_seconds="$2" --set min_free_bytes=0 \
    --set log_format=json --set log_file="$1.log" &
  CT_PID=$!
  PIDS+=($CT_PID)
  for _ in $(seq 100); do grep -q '"event":"started"' "$1.log" 2>/dev/null && break; sleep 0.1; done
  CT_PORT=$($PY -c 'import json,sys; print([json.loads(l) for l in open(sys.argv[1]) if "scp_listening" in l][0]["port"])' "$1.log")
  CT_HTTP=$($PY -c 'import json,sys; print([json.loads(l) for l in open(sys.argv[1]) if "http_listening" in l][0]["port"])' "$1.log")
}

stop() { kill "$1"; wait "$1" 2>/dev/null || true; }

# --- 1. throughput --------------------------------------------------------
declare -A T
for par in 1 4; do
  P=$(free_port); mkdir -p "$WORK/scp$par"; start_storescp "$WORK/scp$par" "$P"
  T[scp$par]=$(push STORESCP "$P" $par)
  stop "${PIDS[-1]}"
  start_ctphased "$WORK/ct$par" 60
  T[ct$par]=$(push CTPHASE "$CT_PORT" $par)
  n=$($PY -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from instances").fetchone()[0])' "$WORK/ct$par/ctphased.db")
  [ "$n" = "${#FILES[@]}" ] || { echo "ctphased stored $n of ${#FILES[@]}"; exit 1; }
  stop "$CT_PID"
done
printf '\n%-34s %8s %9s %8s\n' "receiver" "seconds" "files/s" "MB/s"
for key in scp1 ct1 scp4 ct4; do
  case $key in
    scp1) name="storescp, 1 storescu";; ct1) name="ctphased, 1 storescu";;
    scp4) name="storescp, 4 storescu at once";; ct4) name="ctphased, 4 storescu at once";;
  esac
  printf '%-34s %8.2f %9.1f %8.1f\n' "$name" "${T[$key]}" \
    "$(echo "${#FILES[@]} / ${T[$key]}" | bc -l)" "$(echo "$MB / ${T[$key]}" | bc -l)"
done
printf '\nreceive-throughput ratio ctphased/storescp: %.2f (1 association), %.2f (4 at once); target >= 0.9\n' \
  "$(echo "${T[scp1]} / ${T[ct1]}" | bc -l)" "$(echo "${T[scp4]} / ${T[ct4]}" | bc -l)"

# --- 1b. the durability floor ---------------------------------------------
# bench_durable syncs before each of its passes, like push.
DUR=$("$DURABLE" "$WORK/durable" "${FILES[@]}")
T_A=$(echo "$DUR" | awk '$1 == "rename:" {print $2}')
T_B=$(echo "$DUR" | awk '$1 == "journal:" {print $2}')
M_A=$(echo "$DUR" | awk '$1 == "rename:" {print $5}')
M_B=$(echo "$DUR" | awk '$1 == "journal:" {print $5}')
T_SCP=$(echo "${T[scp1]} * 1000 / ${#FILES[@]}" | bc -l)
rm -rf "$WORK/durable"
printf '\ndurability floor on this disk (%d instances, one at a time, no network):\n' "${#FILES[@]}"
printf '  storescp, 1 storescu:                              %7.3f ms/instance (no flush)\n' "$T_SCP"
printf '  a. new file + fsync + rename + folder fsync:       %7.3f ms/instance (median %s ms; ctphased'"'"'s sequence)\n' "$T_A" "$M_A"
printf '  b. preallocated fsynced journal + one fdatasync:   %7.3f ms/instance (median %s ms)\n' "$T_B" "$M_B"
printf 'best ratio on 1 association, t_storescp/(t_storescp + t): %.2f with a, %.2f with b; measured ctphased/storescp: %.2f\n' \
  "$(echo "$T_SCP / ($T_SCP + $T_A)" | bc -l)" "$(echo "$T_SCP / ($T_SCP + $T_B)" | bc -l)" \
  "$(echo "${T[scp1]} / ${T[ct1]}" | bc -l)"

# --- 2. latency -----------------------------------------------------------
start_ctphased "$WORK/lat" $STABLE
SERIES=("${FILES[@]:0:100}")
storescu -aec CTPHASE 127.0.0.1 "$CT_PORT" "${SERIES[@]}"
T_LAST=$(date +%s.%N)
$PY - "$WORK/lat/ctphased.db" "$T_LAST" "$STABLE" <<'EOF'
import sqlite3, sys, time
db, t_last, stable = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
deadline = time.time() + 600
while time.time() < deadline:
    row = sqlite3.connect(db).execute(
        "select state, finished_at, duration_s, started_at, created_at from jobs "
        "where state in ('done','failed','skipped')").fetchone()
    if row:
        break
    time.sleep(0.02)
state, finished, duration, started, created = row
print(f"\nlatency, 100-slice series (stable_seconds {stable:g}): job {state}")
print(f"  last instance acknowledged -> job finished: {finished - t_last:.2f} s")
print(f"  minus stable_seconds:                       {finished - t_last - stable:.2f} s")
print(f"    of which scheduling (due -> job start):   {started - t_last - stable:.3f} s")
print(f"    of which the job itself (read, infer):    {duration:.2f} s")
open(sys.argv[1] + ".latency", "w").write(f"{finished - t_last - stable:.4f}\n")
EOF
stop "$CT_PID"
# The same files through `ctphase predict` (same model, all cores), which
# the job's latency beyond stable_seconds is compared with (target <= 1.3x).
mkdir -p "$WORK/lat-files"
cp "${SERIES[@]}" "$WORK/lat-files/"
sync
T0=$(date +%s.%N)
"$BUILD/src/cli/ctphase" predict "$WORK/lat-files" --model "$MODEL" >/dev/null
T_PRED=$(echo "$(date +%s.%N) - $T0" | bc -l)
T_LAT=$(cat "$WORK/lat/ctphased.db.latency")
printf '  ctphase predict on the same 100 files:      %.2f s\n' "$T_PRED"
printf 'job latency (minus stable_seconds) / ctphase predict: %.2f; target <= 1.3\n' \
  "$(echo "$T_LAT / $T_PRED" | bc -l)"
