"""NeuroNova reference inference service: a reference for integration, NOT a clinical model.

Start it with ``python -m ai_client.reference_service --host 127.0.0.1 --port 8900``.
"""

from .analysis import MODELS, Analysis, ModelSpec, analyse
from .faults import Fault, FaultQueue
from .inference import FetchOptions, UnknownModel, dicomweb_fetch, infer_volume, run_inference
from .seed import SEED_FIELDS, UnknownInstance, orthanc_instance_id, seed_answer
from .server import ReferenceServer, ServiceConfig

__all__ = [
    "MODELS",
    "SEED_FIELDS",
    "Analysis",
    "Fault",
    "FaultQueue",
    "FetchOptions",
    "ModelSpec",
    "ReferenceServer",
    "ServiceConfig",
    "UnknownInstance",
    "UnknownModel",
    "analyse",
    "dicomweb_fetch",
    "infer_volume",
    "orthanc_instance_id",
    "run_inference",
    "seed_answer",
]
