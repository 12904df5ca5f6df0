"""Test settings shared by every test: property-based tests draw the same cases on every run (CI included);
`HYPOTHESIS_PROFILE=explore` draws new random cases (and more with each file's own environment knob)."""

import os

from hypothesis import settings

settings.register_profile("deterministic", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))
