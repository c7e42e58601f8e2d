"""Where the team's shared test data lives: ../shared beside the checkout (as in CI).

MAILWARDEN_SHARED overrides it.
"""

from __future__ import annotations

import os
from pathlib import Path

SHARED = Path(os.environ.get("MAILWARDEN_SHARED", Path(__file__).resolve().parents[2] / "shared"))
CORPORA = SHARED / "corpora"
