#!/usr/bin/env bash
# The run command of the README: installs what is missing, builds ctphase,
# and shows a newcomer what it does on bundled data: the network and its
# model file, then a forward pass over a bundled 512x512 slice.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh
[ -f build/build.ninja ] || meson setup build --buildtype=release >/dev/null
ninja -C build >/dev/null
CTP=build/src/cli/ctphase
MODEL=tests/reference/fixtures/b1_512_c1/model.safetensors
INPUT=tests/reference/fixtures/b1_512_c1/x.npy
mkdir -p var
echo "== ctphase model info $MODEL"
$CTP model info "$MODEL"
echo
echo "== ctphase forward --model $MODEL --input $INPUT --out var/logits.npy"
$CTP forward --model "$MODEL" --input "$INPUT" --out var/logits.npy
echo
echo "(This model has random test weights: the engine is exercised, the phase"
echo " is meaningless until a trained model is bundled. Logits: var/logits.npy)"
