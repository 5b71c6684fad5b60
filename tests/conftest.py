"""Make the plugin package and the test helpers importable."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT / "plugin", ROOT):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


def _no_download(*_args: object, **_kwargs: object) -> None:
    raise RuntimeError("test data downloads are disabled: tests use installed data only")


# pydicom's file search also tries to download missing files from the internet; this
# machine (and CI) reaches only package registries, and tests must not depend on more.
import pydicom.data.data_manager as _data_manager  # noqa: E402

_data_manager.data_path_with_download = _no_download  # type: ignore[assignment]
