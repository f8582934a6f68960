"""Test setup: make ``import pipevisor`` work from a checkout without installing.

pyproject.toml already sets ``pythonpath = ["src"]``; this keeps the tests
runnable when pytest picks another rootdir.
"""

from __future__ import annotations

import os
import sys

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
if SRC not in sys.path:
    sys.path.insert(0, SRC)
