"""The baseline (non-AVX2) inner loops: the rest of the suite runs whichever set the CPU offers,
so on an AVX2 machine the baseline loops would otherwise go untested. Here the kernel reference
tests and the scoring tests run again in a child process with ``FASTRANK_DISABLE_AVX2=1``."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import fastrank

TESTS = Path(__file__).resolve().parent
BASELINE_SUITES = ["test_sgd_reference.py", "test_recommend.py", "test_evaluation.py"]


def baseline_environment():
    return dict(os.environ, FASTRANK_DISABLE_AVX2="1")


def test_disabling_avx2_selects_the_baseline_loops():
    result = subprocess.run([sys.executable, "-c", "import fastrank; print(fastrank.instruction_set)"],
                            env=baseline_environment(), capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "baseline"


@pytest.mark.skipif(fastrank.instruction_set == "baseline", reason="the whole suite already runs the baseline loops")
def test_baseline_loops_pass_the_kernel_and_scoring_tests():
    suites = [str(TESTS / name) for name in BASELINE_SUITES]
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *suites],
                            env=baseline_environment(), capture_output=True, text=True, cwd=TESTS.parent)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
