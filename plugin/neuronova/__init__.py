"""NeuroNova: the Orthanc plugin that gates, transcodes and routes studies to AI.

Only :mod:`neuronova.orthanc_bridge` imports the ``orthanc`` module; everything else is
plain Python over values so that it can be unit-tested without Orthanc.
"""

__version__ = "0.1.0"
