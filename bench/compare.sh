#!/usr/bin/env bash
# The engine against its peers on the same weights, same threads, same run:
# ctphase (bench_nn), PyTorch (bench/peers.py, Debian's python3-torch) and
# ONNX Runtime (bench/ort_bench.mjs, npm onnxruntime-node). Prints each
# one's ms per 512x512 slice and the ratios ctphase / peer (below 1: ctphase
# is faster). The machines are shared and noisy: every figure is a best of
# --reps, and the peers run interleaved with ctphase, so compare the ratios.
#
#   bench/compare.sh [MODEL] [--threads N] [--reps R]
#
# MODEL defaults to a He-initialised model written by `ctphase model init`.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=""
THREADS=2
REPS=5
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    *) MODEL=$1; shift ;;
  esac
done
[ -f build/build.ninja ] || meson setup build --buildtype=release >/dev/null
ninja -C build >/dev/null
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
if [ -z "$MODEL" ]; then
  MODEL=$TMP/model.safetensors
  build/src/cli/ctphase model init --seed 1 --out "$MODEL" >/dev/null
fi
if [ ! -d bench/node_modules/onnxruntime-node ]; then
  (cd bench && npm install --ignore-scripts --no-audit --no-fund >/dev/null)
fi

echo "model $MODEL, $THREADS threads, best of $REPS" >&2
build/bench/bench_nn "$MODEL" --threads "$THREADS" --reps "$REPS" --json > "$TMP/ctp1.json"
OMP_NUM_THREADS=$THREADS /usr/bin/python3 bench/peers.py "$MODEL" --threads "$THREADS" \
  --reps "$REPS" --onnx "$TMP/model.onnx" --json "$TMP/torch.json" >/dev/null 2>&1
node bench/ort_bench.mjs "$TMP/model.onnx" --threads "$THREADS" --reps "$REPS" > "$TMP/ort1.json"
# A second round, interleaved, so that a burst of load hits both sides.
build/bench/bench_nn "$MODEL" --threads "$THREADS" --reps "$REPS" --json > "$TMP/ctp2.json"
node bench/ort_bench.mjs "$TMP/model.onnx" --threads "$THREADS" --reps "$REPS" > "$TMP/ort2.json"

/usr/bin/python3 - "$TMP" <<'PY'
import json, os, sys
tmp = sys.argv[1]
load = lambda n: json.load(open(os.path.join(tmp, n)))
c1, c2 = load("ctp1.json"), load("ctp2.json")
o1, o2 = load("ort1.json"), load("ort2.json")
t = load("torch.json")
best = lambda k, a, b: min(a[k], b[k])
ctp = {k: best(k, c1, c2) for k in ("fwd_b1_ms", "fwd_b8_ms", "fwd_grad_b8_ms", "train_b8_ms")}
ort = {"b1": min(o1["batch1_ms"], o2["batch1_ms"]), "b8": min(o1["batch8_ms"], o2["batch8_ms"])}
gflop = c1["gflop_per_slice"]
rows = [
    ("forward, batch 1", ctp["fwd_b1_ms"], ort["b1"], t["forward_b1_ms"]),
    ("forward, batch 8", ctp["fwd_b8_ms"], ort["b8"], t["forward_b8_ms"]),
    ("forward + input gradient, b8", ctp["fwd_grad_b8_ms"], None, t["saliency_ms"]),
    ("training step, batch 8", ctp["train_b8_ms"], None, t["train_step_ms"]),
]
print(f"ms per 512x512 slice, {c1['threads']} threads, kernels {c1['kernels']}, "
      f"{gflop:.2f} GFLOP per forward")
print(f"{'':32} {'ctphase':>9} {'ORT':>9} {'PyTorch':>9} {'ctp/ORT':>8} {'ctp/torch':>9}")
for name, c, o, p in rows:
    os_ = f"{o:9.2f}" if o else f"{'-':>9}"
    ro = f"{c / o:8.2f}" if o else f"{'-':>8}"
    print(f"{name:32} {c:9.2f} {os_} {p:9.2f} {ro} {c / p:9.3f}")
print(f"forward+input gradient / forward (b8): {ctp['fwd_grad_b8_ms'] / ctp['fwd_b8_ms']:.2f}")
print(f"ctphase forward b8: {gflop / ctp['fwd_b8_ms'] * 1e3:.0f} GFLOP/s")
print(f"peak RSS: ctphase {c1['peak_rss_infer_mb']:.0f} MB after batch-8 inference, "
      f"{c1['peak_rss_mb']:.0f} MB with training; PyTorch "
      f"{max(t['peak_rss_mb'].values()):.0f} MB; ORT {o1.get('peak_rss_mb', float('nan'))} MB")
PY
