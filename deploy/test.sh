#!/usr/bin/env bash
# The test command of the README: installs what is missing, builds ctphase
# twice (release; and debug with AddressSanitizer + UBSan), runs every test
# suite against both builds, and ends with the line "N passed, N failed".
#
#   deploy/test.sh            everything
#   deploy/test.sh --no-asan  skip the sanitizer build (faster, for hacking)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ASAN=1
[ "${1:-}" = "--no-asan" ] && ASAN=0

deploy/install-deps.sh || { echo "install-deps failed"; echo "0 passed, 1 failed"; exit 1; }

build() { # dir, meson options...
  local dir=$1; shift
  if [ ! -f "$dir/build.ninja" ]; then
    meson setup "$dir" "$@" >"$dir.setup.log" 2>&1 || { cat "$dir.setup.log"; return 1; }
  fi
  ninja -C "$dir" >"$dir.ninja.log" 2>&1 || { tail -50 "$dir.ninja.log"; return 1; }
}

total_pass=0
total_fail=0
total_skip=0
LOG=$(mktemp)
# Runs one suite, echoes its output, and adds its closing counts.
suite() { # name, command...
  local name=$1; shift
  echo "=== $name"
  "$@" 2>&1 | tee "$LOG"
  local rc=${PIPESTATUS[0]}
  local line
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$LOG" | tail -1)
  if [ -z "$line" ]; then
    echo "$name: no summary line (exit $rc): counted as one failure"
    total_fail=$((total_fail + 1))
    return
  fi
  local p f s
  p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
  f=$(echo "$line" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
  s=$(echo "$line" | sed -nE 's/.*, ([0-9]+) skipped.*/\1/p')
  total_pass=$((total_pass + p))
  total_fail=$((total_fail + f))
  total_skip=$((total_skip + ${s:-0}))
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "$name: exited $rc with no failed test: counted as one failure"
    total_fail=$((total_fail + 1))
  fi
}

if ! build build --buildtype=release; then
  echo "build failed"; echo "0 passed, 1 failed"; exit 1
fi
export CTPHASE_SOURCE_ROOT=$ROOT
# Test suites run servers and several processes on 2 cores: OpenMP threads
# that spin while waiting would steal the cores from each other.
export OMP_WAIT_POLICY=passive
suite "unit (release)" build/tests/ctphase-tests
suite "cli (release)" /usr/bin/python3 tests/cli_test.py build
suite "phantom (release)" /usr/bin/python3 tests/phantom_test.py build
suite "explain (release)" /usr/bin/python3 tests/explain_test.py build
suite "service (release)" /usr/bin/python3 tests/service_test.py build
suite "delivery (release)" /usr/bin/python3 tests/delivery_test.py build
suite "report (release)" /usr/bin/python3 tests/report_test.py build
suite "evaluate (release)" /usr/bin/python3 tests/evaluate_test.py build

if [ "$ASAN" = 1 ]; then
  if build build-asan --buildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false; then
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    export LSAN_OPTIONS=suppressions=$ROOT/tests/lsan.supp:print_suppressions=0
    suite "unit (asan+ubsan)" build-asan/tests/ctphase-tests
    CTPHASE_TEST_QUICK=1 suite "cli (asan+ubsan)" /usr/bin/python3 tests/cli_test.py build-asan
    CTPHASE_TEST_QUICK=1 suite "service (asan+ubsan)" /usr/bin/python3 tests/service_test.py build-asan
    suite "evaluate (asan+ubsan)" /usr/bin/python3 tests/evaluate_test.py build-asan
  else
    echo "sanitizer build failed"
    total_fail=$((total_fail + 1))
  fi
fi
rm -f "$LOG"
echo
echo "$total_pass passed, $total_fail failed, $total_skip skipped"
[ "$total_fail" -eq 0 ]
