"""Suite-wide settings.

Hypothesis: under CI (`.ci/run` sets `CACHESCOPE_CI=1`) the property tests draw the same examples
every run (`derandomize`), so whether a submission lands never depends on the luck of a draw; a
developer's `make test` draws new examples each time, which is how new counterexamples are found —
each one found becomes an explicit regression test.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile("ci" if os.environ.get("CACHESCOPE_CI") else "dev")
