"""AI: rules, durable inference jobs and their DICOM results (SEG, TID 1500 SR)."""

import importlib.util
import sys
from pathlib import Path

# ai_client (the inference client library) lives at the repository root, beside plugin/.
# Orthanc puts only the script's folder (plugin/) and the venv on sys.path, so the root is
# appended (after the venv: an installed ai_client would win).
_ROOT = Path(__file__).resolve().parents[3]
if importlib.util.find_spec("ai_client") is None and (_ROOT / "ai_client" / "__init__.py").is_file():
    sys.path.append(str(_ROOT))
