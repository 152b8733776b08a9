"""Test helpers of the WeCom domain: Tencent's published sample and its location."""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path

# The shared folder sits beside the checkout (../shared); SIYU_SHARED_DIR overrides it.
REPO_ROOT = Path(__file__).resolve().parents[3]


def shared_dir() -> Path:
    return Path(os.environ.get("SIYU_SHARED_DIR", REPO_ROOT.parent / "shared"))


@cache
def tencent_sample() -> dict:
    """Tencent's callback sample from shared/testdata, or the same values kept in-tree."""
    path = shared_dir() / "testdata" / "wecom_callback_sample.json"
    if path.exists():
        return json.loads(path.read_text())
    return json.loads((Path(__file__).parent / "tests" / "wecom_callback_sample.json").read_text())
