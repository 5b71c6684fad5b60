"""Make the plugin package and the test helpers importable."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT / "plugin", ROOT):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
