"""Shared test settings. `HYPOTHESIS_PROFILE=thorough` runs the property tests much longer."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("thorough", max_examples=20000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
