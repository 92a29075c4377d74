"""The long fuzz run as a pytest entry point: skipped unless EDGECORE_FUZZ=1.

    EDGECORE_FUZZ=1 EDGECORE_FUZZ_BUDGET=20000 python -m pytest tests/fuzz -p no:cacheprovider

Each target of edgecore_fuzz_targets.py gets ``EDGECORE_FUZZ_BUDGET`` hypothesis examples
(default 20000) over raw bytes and mutated seeds. For coverage-guided fuzzing use
``python tests/fuzz/run.py`` (atheris); see README.md.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import edgecore_fuzz_targets as targets  # noqa: E402
import run  # noqa: E402

pytestmark = pytest.mark.skipif(
    os.environ.get("EDGECORE_FUZZ") != "1",
    reason="long fuzz run: set EDGECORE_FUZZ=1 (see tests/fuzz/README.md)",
)


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_fuzz_target(name):
    budget = int(os.environ.get("EDGECORE_FUZZ_BUDGET", "20000"))
    assert run.run_hypothesis([name], budget, 4096) == []
