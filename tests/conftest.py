"""Suite-wide test configuration: hypothesis profiles.

"ci" (the default) keeps property tests quick on a 2-core CI machine, never
fails on timing (deadline=None: a shared machine is noisy) and is
derandomized, so a run that passes here passes in CI; "explore" draws fresh
random examples (and replays saved failures), "thorough" runs many more:

    HYPOTHESIS_PROFILE=thorough .venv/bin/python -m pytest tests/property
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
    derandomize=True,
)
settings.register_profile(
    "explore",
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "thorough",
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
