"""Shared test settings: hypothesis profiles ("dev" by default, "ci" with fewer examples),
and ``EX_ESDB_HTTP_PORT=0``: the servers the tests start (``python -m exesdb start``) take a
free port for their HTTP listener, never the fixed default 2112, so test runs side by side
never collide on it; and the figures tests record (``figures``) printed at the session's
end."""

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


def pytest_terminal_summary(terminalreporter):
    """Print the figures tests recorded with ``record_property("figures", text)`` (the
    fault campaign's totals) at the end of the session, whether they passed or failed, so
    that CI's log shows them."""
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            for name, value in getattr(report, "user_properties", ()):
                if name == "figures" and getattr(report, "when", "call") == "call":
                    terminalreporter.write_sep("-", f"figures of {report.nodeid} ({outcome})")
                    terminalreporter.write_line(str(value))
os.environ.setdefault("EX_ESDB_HTTP_PORT", "0")
