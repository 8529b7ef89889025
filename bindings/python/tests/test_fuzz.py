"""Garbage to every C entry point, through raw ctypes: the process must survive and every bad
argument must come back as a non-zero status with a message.

The fuzz loop (fuzz_abi.py) runs in a child process. When the library crashes it, the test
notes the scenario being run (the last "CALL" line names the exact call), restarts the loop
without that scenario so the remaining ones are still exercised, and fails at the end listing
every crash and every violation.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import describe_exit

HERE = os.path.dirname(os.path.abspath(__file__))
ITERATIONS = int(os.environ.get("COPPICE_FUZZ_ITERATIONS", "2000"))
# The concurrent run: THREADS fuzzers at once on separate handles, THREAD_ITERATIONS calls each
# (10^5 calls in all by default, about 16 s on 2 cores).
THREADS = int(os.environ.get("COPPICE_FUZZ_THREADS", "4"))
THREAD_ITERATIONS = int(os.environ.get("COPPICE_FUZZ_THREAD_ITERATIONS", "25000"))
SEED = int(os.environ.get("COPPICE_FUZZ_SEED", "20240611"))
MAX_RESTARTS = 12


def run_fuzzer(seed: int, iterations: int, skip: list) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(HERE)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return subprocess.run(
        [sys.executable, os.path.join(HERE, "fuzz_abi.py"), "--seed", str(seed),
         "--iterations", str(iterations), "--skip", ",".join(skip)],
        env=env, capture_output=True, text=True, timeout=300,
    )


def test_fuzz_every_entry_point_with_bad_arguments():
    crashes, violations, skip = [], [], []
    remaining, seed, total_calls = ITERATIONS, SEED, 0
    for _ in range(MAX_RESTARTS):
        result = run_fuzzer(seed, remaining, skip)
        lines = result.stdout.splitlines()
        violations += [line for line in lines if line.startswith("VIOLATION")]
        done = [line for line in lines if line.startswith("DONE")]
        if result.returncode == 0 and done:
            total_calls += int(done[-1].split()[1])
            break
        iterations = [line for line in lines if line.startswith("ITER")]
        calls = [line for line in lines if line.startswith("CALL")]
        if not iterations or result.returncode > 0:
            raise AssertionError("the fuzz driver itself failed:\n" + describe_exit(result))
        _, index, scenario = iterations[-1].split(" ", 2)
        crashes.append(f"{scenario}: {describe_exit(result).splitlines()[0]} at "
                       f"{calls[-1] if calls else '?'}")
        total_calls += len(calls)
        skip.append(scenario)
        remaining -= int(index) + 1
        seed += 1
        if remaining <= 0:
            break
    report = "\n".join(["crashes:"] + crashes + ["violations:"] + sorted(set(violations)))
    assert not crashes and not violations, report
    assert total_calls >= ITERATIONS


def test_fuzz_concurrent_threads_on_separate_handles():
    """THREADS fuzzers at once, each on its own handles and files: separate handles must be
    independent (no crash, no cross-talk in statuses or coppice_last_error)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(HERE)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    result = subprocess.run(
        [sys.executable, os.path.join(HERE, "fuzz_abi.py"), "--seed", str(SEED),
         "--iterations", str(THREAD_ITERATIONS), "--threads", str(THREADS)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    lines = result.stdout.splitlines()
    violations = sorted({line for line in lines if line.startswith("VIOLATION")})
    done = [line for line in lines if line.startswith("DONE")]
    assert result.returncode == 0 and done, describe_exit(result) + "\n" + "\n".join(lines[-5:])
    print(done[-1])
    assert not violations, "\n".join(violations)
    assert int(done[-1].split()[1]) >= THREADS * THREAD_ITERATIONS
