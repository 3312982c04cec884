#!/usr/bin/env bash
# The run command of the README: installs what is missing, builds ctphase,
# and shows a newcomer what it does with embedded defaults (the bundled
# model, SQLite under ./var):
#   1. writes an example CT series with `ctphase phantom` (synthetic, so it
#      can be shipped; its phase is known);
#   2. predicts its phase with `ctphase predict`;
#   3. starts the service ctphased on loopback, pushes the series to it with
#      DCMTK's storescu as a scanner would, waits for the job, shows the
#      result with `ctphase jobs`, and stops the service.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh
[ -f build/build.ninja ] || meson setup build --buildtype=release >/dev/null
ninja -C build >/dev/null
CTP=build/src/cli/ctphase
DAEMON=build/src/service/ctphased
DATA=var/ctphased
PORT=${CTPHASE_PORT:-11112}
ADMIN=${CTPHASE_ADMIN_PORT:-8480}
mkdir -p var "$DATA"

SERIES=var/example/series-0000-cm
if [ ! -d "$SERIES" ]; then
  echo "== ctphase phantom: a synthetic corticomedullary-phase series"
  $CTP phantom --out var/example --series 1 --phase cm --seed 2026 --slices 40 --quiet
fi

echo
echo "== ctphase predict $SERIES"
$CTP predict "$SERIES"

echo "== ctphased on 127.0.0.1:$PORT (data in $DATA, log in $DATA/ctphased.log)"
$DAEMON --foreground --data-dir "$DATA" --port "$PORT" \
  --set bind_address=127.0.0.1 --set admin_port="$ADMIN" --set stable_seconds=2 \
  --set log_file="$DATA/ctphased.log" &
PID=$!
trap 'kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  echoscu -aec CTPHASE 127.0.0.1 "$PORT" >/dev/null 2>&1 && break
  sleep 0.2
done
echo "== storescu: pushing $(ls "$SERIES"/*.dcm | wc -l) files"
storescu -aec CTPHASE 127.0.0.1 "$PORT" "$SERIES"/*.dcm
echo "== waiting for the series to become stable and its job to finish"
for _ in $(seq 120); do
  if $CTP jobs list --data-dir "$DATA" --state done --json 2>/dev/null | grep -q '"id"'; then
    break
  fi
  sleep 0.5
done
$CTP jobs list --data-dir "$DATA" --limit 5
ID=$($CTP jobs list --data-dir "$DATA" --state done --json | /usr/bin/python3 -c \
  'import json,sys; j=json.load(sys.stdin); print(j[0]["id"] if j else "")')
if [ -n "$ID" ]; then
  echo
  echo "== ctphase jobs show $ID"
  $CTP jobs show "$ID" --data-dir "$DATA"
fi
echo
echo "== metrics (http://127.0.0.1:$ADMIN/metrics), a few lines"
curl -s "http://127.0.0.1:$ADMIN/metrics" | grep -E '^ctphase_(instances_received|received_bytes|jobs_finished|series)' | head -8 || true
echo
echo "Done. The bundled model was trained on the synthetic phantom only (see"
echo "docs/model-card.md); do not use it for patient care."
