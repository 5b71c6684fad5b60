"""DICOMweb through the gate: the public /dicom-web/ front and what it is made of.

- ``front``: the front itself (QIDO filtered, WADO-RS forwarded or served, refusals);
- ``paths``: where DICOMweb lives and the one parser of DICOMweb paths;
- ``rules``: what DICOMweb 1.24 allows (methods, Accept values, rendering parameters);
- ``urls``: the public base URL of a request (Host, Forwarded, X-Forwarded-*);
- ``stow``: STOW-RS, part by part, answered as DICOMweb 1.24 does;
- ``admin``: admin requests (``/servers``, ...) forwarded to the DICOMweb plugin.

The front is imported from ``neuronova.dicomweb.front`` (not here) so that the gate can import
``paths`` without importing the front, which imports the gate.
"""

__all__ = ["admin", "front", "paths", "rules", "stow", "urls"]
