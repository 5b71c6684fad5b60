"""The script Orthanc loads (configuration key "Python": {"Path"}).

Orthanc puts this folder first on sys.path, so the ``neuronova`` package next to it is
importable; third-party packages come from the venv on PYTHONPATH (see scripts/run).
"""

from neuronova.orthanc_bridge import install

APP = install()
