"""AI: rules, durable inference jobs and their DICOM results (SEG, TID 1500 SR).

The inference client library ``ai_client`` lives at the repository root, beside plugin/;
scripts/run and the Docker image put the root on PYTHONPATH for Orthanc's Python.
"""
