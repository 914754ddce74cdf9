"""How much slower than our development machines this host runs the suite.

``BERTH_TEST_TIME_SCALE`` (default 1) multiplies the time budgets of tests that assert one:
a CNI plugin's timeout in the fault harness, the short soak's churn. e2e/vm sets it to 4 when
the VM is emulated (TCG), where everything runs several times slower; nothing else sets it.
"""

from __future__ import annotations

import os

TIME_SCALE = max(1.0, float(os.environ.get("BERTH_TEST_TIME_SCALE", "1")))


def scaled(seconds: float) -> float:
    """`seconds` of a budget on this host."""
    return seconds * TIME_SCALE
