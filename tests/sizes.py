"""How many examples the randomized suites run: a CI size by default, far more under soak.

``CASTFLOW_SOAK=1`` turns every hypothesis suite (property trees, fuzzing) into a long run
with a random seed; by default each runs a fixed, derandomized number of examples.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

SOAK = os.environ.get("CASTFLOW_SOAK") == "1"


def sized(examples: int, soak_examples: int) -> settings:
    """Hypothesis settings: ``examples`` by default, ``soak_examples`` under ``CASTFLOW_SOAK``."""
    return settings(
        max_examples=soak_examples if SOAK else examples,
        deadline=None,
        derandomize=not SOAK,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
        ],
    )
