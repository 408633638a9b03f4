"""Shared test settings: hypothesis profiles ("dev" by default, "ci" with fewer examples),
and ``EX_ESDB_HTTP_PORT=0``: the servers the tests start (``python -m exesdb start``) take a
free port for their HTTP listener, never the fixed default 2112, so test runs side by side
never collide on it."""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "dev", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
os.environ.setdefault("EX_ESDB_HTTP_PORT", "0")
