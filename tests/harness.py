"""harness.py — the small runner the Python integration suites share.

A suite registers checks with `suite.check`; a check takes no argument, or
one (a fresh temporary folder). `suite.main()` runs them in order, prints
"ok", "FAIL" (with the traceback) or "skip" (with the reason of a raised
Skip) per check, and ends with "N passed, N failed, N skipped", the line
deploy/test.sh counts. Usage of a suite: tests/NAME_test.py BUILD_DIR.
"""
import os
import subprocess
import sys
import tempfile
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build"))
# $CTPHASE_EXE overrides the binary under test.
CTPHASE = os.environ.get("CTPHASE_EXE") or os.path.join(BUILD, "src", "cli", "ctphase")
# Under the sanitizers, checks on the large real series are skipped.
QUICK = os.environ.get("CTPHASE_TEST_QUICK") == "1"


class Skip(Exception):
    """A check that cannot run here; the message says why."""


def run(*args, ok=True, timeout=600):
    """Runs ctphase; with ok, a non-zero exit fails the check."""
    p = subprocess.run([CTPHASE, *args], capture_output=True, text=True, timeout=timeout)
    if ok and p.returncode != 0:
        raise AssertionError(f"ctphase {' '.join(args)} exited {p.returncode}: {p.stderr}")
    return p


class Suite:
    def __init__(self, prefix):
        self.prefix = prefix
        self.checks = []

    def check(self, fn):
        self.checks.append(fn)
        return fn

    def main(self, skip_all=None, cleanup=None):
        """Runs every check; skip_all, when set, is a reason to skip them
        all; cleanup runs at the end whatever happened. Returns the exit
        status."""
        passed = failed = skipped = 0
        try:
            for fn in self.checks:
                name = f"{self.prefix}_{fn.__name__}"
                with tempfile.TemporaryDirectory() as tmp:
                    try:
                        if skip_all:
                            raise Skip(skip_all)
                        fn(tmp) if fn.__code__.co_argcount else fn()
                        passed += 1
                        print(f"ok      {name}", flush=True)
                    except Skip as e:
                        skipped += 1
                        print(f"skip    {name}: skipped: {e}", flush=True)
                    except Exception:
                        failed += 1
                        print(f"FAIL    {name}")
                        traceback.print_exc(file=sys.stdout)
        finally:
            if cleanup:
                cleanup()
        print(f"{passed} passed, {failed} failed, {skipped} skipped")
        return 1 if failed else 0
