"""Studies for the viewer tests and benchmark: a realistic multi-slice MR series built from a
real MR slice of pydicom's test files, and what a browser can compare pixels with."""

from __future__ import annotations

import copy

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from tests.support.dicom_factory import Study, identify

MR_SOURCE = "MR-SIEMENS-DICOM-WithOverlays.dcm"  # 484 x 484, 12 bits stored in 16, abdominal MR


def make_mr_series(*, slices: int, patient_id: str, patient_name: str, referring: str = "",
                   description: str = "MR abdomen", series_description: str = "T2 axial") -> Study:
    """One series of ``slices`` 484x484 MR images. Each slice differs (intensity and a shift),
    so that a browser showing slice k can be told apart from slice j."""
    template = pydicom.dcmread(str(get_testdata_file(MR_SOURCE)))
    for element in list(template):
        if element.tag.group & 0xFF00 == 0x6000:  # overlays: not what these tests look at
            del template[element.tag]
    base = template.pixel_array.astype(np.int32)
    study = Study(generate_uid(), patient_id)
    series_uid = generate_uid()
    study.series_uids.append(series_uid)
    z0 = float(template.ImagePositionPatient[2])
    for i in range(slices):
        ds = copy.deepcopy(template)
        weight = 0.55 + 0.45 * np.sin(np.pi * (i + 0.5) / slices)
        pixels = np.roll(base, i - slices // 2, axis=0) * weight + i
        ds.PixelData = np.clip(pixels, 0, 4095).astype(np.uint16).tobytes()
        identify(ds, study, series_uid, patient_name, referring)
        ds.StudyDescription = description
        ds.SeriesDescription = series_description
        ds.SeriesNumber = 1
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [float(template.ImagePositionPatient[0]), float(template.ImagePositionPatient[1]),
                                   z0 + i * float(template.SliceThickness)]
        ds.SliceLocation = z0 + i * float(template.SliceThickness)
        study.instances.append(ds)
    return study


def pixel_checksum(values: np.ndarray) -> dict[str, float]:
    """What :data:`CHECKSUM_JS` computes in the browser, for the same pixel values."""
    flat = values.astype(np.float64).ravel()
    weights = (np.arange(flat.size) % 1000) + 1
    return {"n": float(flat.size), "sum": float(flat.sum()), "weighted": float((flat * weights).sum()),
            "min": float(flat.min()), "max": float(flat.max())}


# The image shown in the first OHIF viewport: its imageId and a checksum of its pixel data as
# decoded in the browser (cornerstone's image cache, filled by OHIF's own decoders).
CHECKSUM_JS = """() => {
  const cs = window.cornerstone;
  if (!cs || !cs.getEnabledElements) return null;
  const enabled = cs.getEnabledElements().find((e) => e.viewport && e.viewport.getCurrentImageId);
  if (!enabled) return null;
  const imageId = enabled.viewport.getCurrentImageId();
  const image = imageId && cs.cache.getImage ? cs.cache.getImage(imageId) : null;
  if (!image) return {imageId, loaded: false};
  const data = image.getPixelData();
  let sum = 0, weighted = 0, min = Infinity, max = -Infinity;
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    sum += v; weighted += v * ((i % 1000) + 1);
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return {imageId, loaded: true, n: data.length, sum, weighted, min, max,
          rows: image.rows, columns: image.columns, arrayType: data.constructor.name,
          slope: image.slope, intercept: image.intercept};
}"""
