"""Reliability suite: a short form by default (CI), the long form with ``CHANGECONSOLE_LONG=1``."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

from support.suites import LONG

settings.register_profile(
    "reliability",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    derandomize=not LONG,  # CI: the same examples every run; long form: new ones each time
    print_blob=True,
)
