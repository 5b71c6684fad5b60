"""The gate: authentication, per-study authorization and audit of every HTTP request."""

from .service import Gate

__all__ = ["Gate"]
