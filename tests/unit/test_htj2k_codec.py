"""HTJ2K renditions: every real test image pydicom ships round-trips bit-exactly.

Ground truth is what pydicom decodes the original to; the rendition's codestreams are decoded
by OpenJPEG (pylibjpeg-openjpeg), a different implementation from the OpenJPH encoder, and by
pydicom reading the rendition file back. Codestream markers are checked with a walker written
here, independent of the package's own parser.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imagecodecs
import numpy as np
import pydicom
import pydicom.data
import pytest
from numpy.typing import NDArray
from openjpeg.utils import decode as openjpeg_decode  # OpenJPEG, not OpenJPH
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.utils import iter_pixels, pack_bits, pixel_array
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from neuronova.htj2k import codestream, encapsulation, encoder, jpeg_decoder, pixels
from neuronova.htj2k.codec import (
    NotEncodable,
    Rendition,
    VerificationError,
    encode_rendition,
    frame_spans,
    uncompressed_frame,
)

# The corpus holds deliberately malformed files; pydicom's warnings about them are expected.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

HTJ2K_RPCL = "1.2.840.10008.1.2.4.202"
NATIVE_LE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99"}


# --------------------------------------------------------------------------- the corpus


def _corpus() -> dict[str, Path]:
    """Every file of pydicom's test data and of pydicom-data, by a stable id."""
    files = {}
    for name in pydicom.data.get_testdata_files():
        path = Path(name)
        if not path.is_file():
            continue
        parts = path.parts
        if "data_store" in parts:
            key = "pydicom-data/" + "/".join(parts[parts.index("data_store") + 2 :])
        else:
            key = "pydicom/" + "/".join(parts[parts.index("test_files") + 1 :])
        files[key] = path
    return dict(sorted(files.items()))


CORPUS = _corpus()

#: Files with Pixel Data that must be refused, and why (a fragment of the reason).
REFUSED = {
    "pydicom/JPEG2000-embedded-sequence-delimiter.dcm": "cannot be decoded",
    "pydicom/MR_truncated.dcm": "cannot be decoded",
    "pydicom/SC_rgb_jpeg.dcm": "cannot be written",  # mixed implicit/explicit VR elements
    "pydicom/SC_rgb_dcmtk_+eb+cy+n1.dcm": "'YBR_FULL'",
    "pydicom/SC_rgb_dcmtk_+eb+cy+n2.dcm": "'YBR_FULL'",
    "pydicom/SC_rgb_dcmtk_+eb+cy+np.dcm": "'YBR_FULL_422'",
    "pydicom/SC_rgb_dcmtk_+eb+cy+s2.dcm": "'YBR_FULL_422'",
    "pydicom/SC_rgb_dcmtk_+eb+cy+s4.dcm": "'YBR_FULL'",
    "pydicom/SC_rgb_jpeg_dcmtk.dcm": "'YBR_FULL'",
    "pydicom/SC_rgb_jpeg_lossy_gdcm.dcm": "'YBR_FULL'",
    "pydicom/SC_rgb_small_odd_jpeg.dcm": "'YBR_FULL'",
    "pydicom/SC_ybr_full_422_uncompressed.dcm": "'YBR_FULL_422'",
    "pydicom/examples_ybr_color.dcm": "'YBR_FULL_422'",
    "pydicom/liver_1frame.dcm": "Bits Allocated 1",
    "pydicom/liver_expb_1frame.dcm": "Bits Allocated 1",
    "pydicom/rtdose.dcm": "Bits Allocated 32",
    "pydicom/rtdose_1frame.dcm": "Bits Allocated 32",
    "pydicom/rtdose_expb.dcm": "Bits Allocated 32",
    "pydicom/rtdose_expb_1frame.dcm": "Bits Allocated 32",
    "pydicom/rtdose_rle.dcm": "Bits Allocated 32",
    "pydicom/rtdose_rle_1frame.dcm": "Bits Allocated 32",
    "pydicom-data/SC_rgb_32bit.dcm": "Bits Allocated 32",
    "pydicom-data/SC_rgb_32bit_2frame.dcm": "Bits Allocated 32",
    "pydicom-data/SC_rgb_expb_32bit.dcm": "Bits Allocated 32",
    "pydicom-data/SC_rgb_expb_32bit_2frame.dcm": "Bits Allocated 32",
    "pydicom/SC_rgb_rle_32bit.dcm": "Bits Allocated 32",
    "pydicom/SC_rgb_rle_32bit_2frame.dcm": "Bits Allocated 32",
    "pydicom/badVR.dcm": "Number of Frames",
    "pydicom/meta_missing_tsyntax.dcm": "no Transfer Syntax UID",
    "pydicom/nested_priv_SQ.dcm": "Image Pixel attributes",
    "pydicom-data/liver.dcm": "Bits Allocated 1",
    "pydicom-data/liver_expb.dcm": "Bits Allocated 1",
    "pydicom-data/SC_ybr_full_uncompressed.dcm": "'YBR_FULL'",
    "pydicom-data/color3d_jpeg_baseline.dcm": "'YBR_FULL_422'",
}

#: Of those, the ones pydicom itself cannot decode at all (listed, not skipped).
UNDECODABLE = {
    "pydicom/JPEG2000-embedded-sequence-delimiter.dcm",
    "pydicom/MR_truncated.dcm",
    "pydicom/badVR.dcm",
    "pydicom/meta_missing_tsyntax.dcm",
    "pydicom/nested_priv_SQ.dcm",
    "pydicom-data/OT-PAL-8-face.dcm",
}


def _has_pixel_data(path: Path) -> bool:
    """Whether pydicom finds Pixel Data in the file (read leniently: force=True)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return "PixelData" in pydicom.dcmread(path, force=True)
    except Exception:
        return False  # not DICOM at all (README, JSON, gzip...)


WITH_PIXELS = [key for key, path in CORPUS.items() if _has_pixel_data(path)]
WITHOUT_PIXELS = [key for key in CORPUS if key not in WITH_PIXELS]
#: Data sets without file meta (no preamble, no DICM): encoded too, tested in test_htj2k_bare_dataset.py.
WITHOUT_META = {"pydicom-data/OT-PAL-8-face.dcm"}
ENCODABLE = [key for key in WITH_PIXELS if key not in REFUSED and key not in WITHOUT_META]


def test_corpus_is_the_expected_one() -> None:
    # Guards the parametrisation: if pydicom/pydicom-data change, this says so.
    assert len(ENCODABLE) >= 120
    assert set(REFUSED) <= set(WITH_PIXELS)
    assert len(WITHOUT_PIXELS) >= 60


# --------------------------------------------------------------------------- helpers


def _quiet_read(path: Path | bytes) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(path) if isinstance(path, bytes) else path)


def _reference_frames(ds: Dataset) -> list[NDArray[np.generic]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [np.array(f) for f in iter_pixels(ds)]


def _markers(cs: bytes) -> dict[int, bytes]:
    """Main-header marker segments by marker code (independent of codestream.py)."""
    assert cs[:2] == b"\xff\x4f", "SOC"
    pos, seen = 2, {}
    while cs[pos : pos + 2] != b"\xff\x90":
        marker = int.from_bytes(cs[pos : pos + 2], "big")
        length = int.from_bytes(cs[pos + 2 : pos + 4], "big")
        seen[marker] = cs[pos + 4 : pos + 2 + length]
        pos += 2 + length
    seen[0xFF90] = cs[pos:]
    return seen


def _check_codestream(cs: bytes, rows: int, columns: int, samples: int) -> None:
    seen = _markers(cs)
    siz, cod = seen[0xFF51], seen[0xFF52]
    assert next(iter(seen)) == 0xFF51, "SIZ right after SOC"
    rsiz = int.from_bytes(siz[0:2], "big")
    assert rsiz & 0x4000, "Rsiz must flag an HTJ2K (Part 15) codestream"
    assert int.from_bytes(siz[2:6], "big") == columns
    assert int.from_bytes(siz[6:10], "big") == rows
    assert int.from_bytes(siz[34:36], "big") == samples
    assert 0xFF50 in seen, "CAP marker"
    assert int.from_bytes(seen[0xFF50][0:4], "big") & 0x00020000, "CAP declares Part 15"
    assert cod[1] == 2, "progression order RPCL (LRCP=0, RLCP=1, RPCL=2, PCRL=3, CPRL=4)"
    assert cod[4] == (1 if samples == 3 else 0), "colour transform only for colour"
    levels = cod[5]
    assert -(-max(rows, columns) // (1 << levels)) <= 64, "base resolution <= 64"
    assert cod[8] & 0x40, "HT code-blocks"
    assert cod[9] == 1, "5/3 reversible wavelet"
    assert 0xFF55 in seen, "TLM marker"
    assert cs[-2:] == b"\xff\xd9", "EOC"
    # one tile-part per resolution
    pos, tile_parts = cs.index(b"\xff\x90"), 0
    while cs[pos : pos + 2] == b"\xff\x90":
        tile_parts += 1
        pos += int.from_bytes(cs[pos + 6 : pos + 10], "big")
    assert tile_parts == levels + 1
    assert pos == len(cs) - 2


def _part10(
    frames: NDArray[np.generic],
    *,
    bits_stored: int | None = None,
    photometric: str | None = None,
    planar: int = 0,
    transfer_syntax: UID = ExplicitVRLittleEndian,
) -> bytes:
    """A minimal Secondary Capture instance holding ``frames`` (frames, rows, cols[, 3])."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientID = "OT", "HTJ2K-TEST"
    colour = frames.ndim == 4
    ds.Rows, ds.Columns = frames.shape[1:3]
    ds.NumberOfFrames = frames.shape[0]
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = photometric or ("RGB" if colour else "MONOCHROME2")
    if colour:
        ds.PlanarConfiguration = planar
    ds.BitsAllocated = frames.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if frames.dtype.kind == "i" else 0
    data = frames.transpose(0, 3, 1, 2) if colour and planar else frames
    ds.PixelData = np.ascontiguousarray(data).astype(frames.dtype.newbyteorder("<")).tobytes()
    ds["PixelData"].VR = "OW" if ds.BitsAllocated > 8 else "OB"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _assert_round_trip(rendition: Rendition, reference: list[NDArray[np.generic]]) -> None:
    assert rendition.number_of_frames == len(reference)
    for number, (span, expected) in enumerate(zip(rendition.frames, reference, strict=True), 1):
        cs = rendition.data[span.offset : span.offset + span.length]
        assert bytes(rendition.frame(number)) == cs
        _check_codestream(cs, rendition.rows, rendition.columns, rendition.samples_per_pixel)
        by_openjpeg = openjpeg_decode(cs)
        assert by_openjpeg.shape == expected.shape
        assert np.array_equal(by_openjpeg, expected), f"frame {number} differs (OpenJPEG)"
        assert np.array_equal(imagecodecs.htj2k_decode(cs), expected), f"frame {number} (OpenJPH)"


# --------------------------------------------------------------------------- the corpus tests


@pytest.mark.parametrize("key", ENCODABLE)
def test_corpus_image_round_trips_bit_exactly(key: str) -> None:
    path = CORPUS[key]
    original = path.read_bytes()
    rendition = encode_rendition(original)
    source = _quiet_read(original)
    reference = _reference_frames(source)
    _assert_round_trip(rendition, reference)

    # The rendition is a Part 10 file pydicom reads, whose frames decode to the same pixels.
    stored = _quiet_read(rendition.data)
    assert stored.file_meta.TransferSyntaxUID == HTJ2K_RPCL == rendition.transfer_syntax
    assert stored.SOPInstanceUID == source.SOPInstanceUID
    # Part 10 consistency (pydicom enforces it; the anonymised bad_sequence.dcm differs)
    assert stored.file_meta.MediaStorageSOPInstanceUID == source.SOPInstanceUID
    assert frame_spans(rendition.data) == rendition.frames
    decoded_copy = _reference_frames(stored)
    assert all(np.array_equal(a, b) for a, b in zip(decoded_copy, reference, strict=True))
    _assert_attributes_kept(source, stored, str(source.file_meta.TransferSyntaxUID))

    # Uncompressed frames from the original: first and last.
    for number in sorted({1, len(reference)}):
        raw = uncompressed_frame(original, number)
        expected = reference[number - 1]
        if source.file_meta.TransferSyntaxUID in NATIVE_LE:
            size = len(raw)  # native little endian: the stored bytes, untouched
            assert raw == bytes(source.PixelData[(number - 1) * size : number * size])
        if source.get("PlanarConfiguration", 0) == 1 and expected.ndim == 3:
            expected = expected.transpose(2, 0, 1)
        little = np.ascontiguousarray(expected).astype(expected.dtype.newbyteorder("<"))
        values = np.frombuffer(raw, little.dtype).reshape(little.shape)
        assert np.array_equal(_bits_stored(values, source), little)


def _bits_stored(values: NDArray[np.generic], ds: Dataset) -> NDArray[np.generic]:
    """What a reader makes of raw samples: only the Bits Stored low bits count (PS3.5 8.1.1),
    sign-extended for signed data (the stored high bits may hold anything)."""
    unused = values.dtype.itemsize * 8 - int(ds.BitsStored)
    if not unused:
        return values
    shifted: NDArray[np.generic] = np.right_shift(np.left_shift(values, unused), unused)
    return shifted


def _assert_attributes_kept(source: Dataset, stored: Dataset, source_syntax: str) -> None:
    changed = {
        0x00280004,  # Photometric Interpretation (colour: YBR_RCT)
        0x00280006,  # Planar Configuration (colour: 0)
        0x00282110,  # Lossy Image Compression (set when lossy evidence)
        0x00282112,
        0x00282114,
        0x7FE00001,  # the original's extended offset table
        0x7FE00002,
        0x7FE00010,  # pixel data
    }
    big_endian = source_syntax == "1.2.840.10008.1.2.2"
    for element in source:
        if element.tag in changed or element.tag.group == 0x0002 or element.tag.element == 0:
            continue  # pixel description, file meta, retired group lengths (pydicom drops them)
        assert element.tag in stored, f"{element.tag} lost"
        kept = stored[element.tag]
        if big_endian and element.VR in ("OW", "OF", "OL", "OD", "OV"):
            width = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}[element.VR]
            before = np.frombuffer(element.value, f">u{width}")
            after = np.frombuffer(kept.value, f"<u{width}")
            assert np.array_equal(before, after), f"{element.tag} value changed"
        else:
            assert kept.value == element.value, f"{element.tag} value changed"
    if int(source.get("SamplesPerPixel", 1)) == 3:
        assert stored.PhotometricInterpretation == "YBR_RCT"
        assert stored.PlanarConfiguration == 0
    else:
        assert stored.PhotometricInterpretation == source.PhotometricInterpretation
    if "LossyImageCompression" in source:
        assert stored.LossyImageCompression == source.LossyImageCompression


@pytest.mark.parametrize("key", sorted(REFUSED))
def test_corpus_file_refused_with_reason(key: str) -> None:
    with pytest.raises(NotEncodable) as refused:
        encode_rendition(CORPUS[key].read_bytes())
    assert REFUSED[key] in refused.value.reason


@pytest.mark.parametrize("key", sorted(UNDECODABLE))
def test_undecodable_files_are_undecodable_by_pydicom(key: str) -> None:
    # Listed explicitly rather than skipped: pydicom itself cannot give their pixels.
    with warnings.catch_warnings(), pytest.raises(Exception):  # noqa: B017 - any decoder error
        warnings.simplefilter("ignore")
        pixel_array(pydicom.dcmread(CORPUS[key], force=True))


def test_files_without_pixel_data_are_refused() -> None:
    # DICOM files without Pixel Data (SR, RT plans, DICOMDIR...) and non-DICOM files
    for key in WITHOUT_PIXELS:
        with pytest.raises(NotEncodable, match=r"no Pixel Data|not a readable"):
            encode_rendition(CORPUS[key].read_bytes())


def test_refused_list_has_no_encodable_file() -> None:
    # Every refused file with decodable pixels is refused by a rule, not by accident.
    for key in sorted(set(REFUSED) - UNDECODABLE):
        source = _quiet_read(CORPUS[key])
        reason = REFUSED[key]
        if "YBR" in reason:
            assert str(source.PhotometricInterpretation).startswith("YBR")
        elif "Bits Allocated" in reason:
            assert source.BitsAllocated in (1, 32)


# --------------------------------------------------------------------------- synthetic layouts


def _ramp(shape: tuple[int, ...], dtype: str, seed: int) -> NDArray[np.generic]:
    """Smooth image + noise spanning the full range of ``dtype`` (extremes included)."""
    info = np.iinfo(dtype)
    rng = np.random.default_rng(seed)
    values = rng.integers(info.min, info.max, size=shape, dtype=np.int64, endpoint=True)
    flat = values.reshape(-1)
    flat[0], flat[-1] = info.min, info.max
    return values.astype(dtype)


@pytest.mark.parametrize(
    ("shape", "dtype", "bits_stored"),
    [
        ((2, 64, 80), "int16", 16),
        ((1, 64, 80), "uint16", 16),
        ((1, 50, 70), "int8", 8),
        ((1, 50, 70), "uint8", 8),
        ((3, 1, 300), "uint16", 16),  # a single row
        ((1, 300, 1), "int16", 16),  # a single column
        ((1, 3, 3), "uint8", 8),
        ((1, 40, 4100), "uint16", 16),  # needs 7 levels for a base <= 64
        ((2, 32, 32, 3), "uint8", 8),
        ((1, 33, 47, 3), "uint16", 16),  # RCT on 16-bit: chroma needs 17 bits
    ],
)
def test_synthetic_full_range_round_trip(shape: tuple[int, ...], dtype: str, bits_stored: int) -> None:
    frames = _ramp(shape, dtype, seed=sum(shape))
    rendition = encode_rendition(_part10(frames, bits_stored=bits_stored))
    _assert_round_trip(rendition, list(frames))


def test_signed_12_bit_in_16_round_trips() -> None:
    rng = np.random.default_rng(12)
    frames = rng.integers(-2048, 2047, size=(2, 96, 128), endpoint=True).astype(np.int16)
    frames[0, 0, 0], frames[0, 0, 1] = -2048, 2047
    original = _part10(frames, bits_stored=12)
    rendition = encode_rendition(original)
    _assert_round_trip(rendition, list(frames))
    stored = _quiet_read(rendition.data)
    assert (stored.BitsStored, stored.HighBit, stored.PixelRepresentation) == (12, 11, 1)
    # imagecodecs writes the container precision (16 bits) into SIZ, signed
    info = codestream.parse(bytes(rendition.frame(1)))
    assert (info.precision, info.signed) == (16, True)


def test_planar_rgb_is_encoded_colour_by_pixel() -> None:
    frames = _ramp((1, 20, 30, 3), "uint8", seed=3)
    rendition = encode_rendition(_part10(frames, planar=1))
    _assert_round_trip(rendition, list(frames))
    stored = _quiet_read(rendition.data)
    assert (stored.PhotometricInterpretation, stored.PlanarConfiguration) == ("YBR_RCT", 0)
    assert np.array_equal(stored.pixel_array, frames[0])


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda: _part10(np.zeros((1, 8, 8), np.uint32)), "Bits Allocated 32"),
        (lambda: _part10(np.zeros((1, 8, 8, 3), np.uint8), photometric="YBR_FULL"), "YBR_FULL"),
        (lambda: _part10(np.zeros((1, 8, 8, 3), np.int16)), "signed colour"),
        (lambda: _part10(np.zeros((1, 8, 8), np.uint8), photometric="RGB"), "one sample"),
        (lambda: b"not a DICOM file at all" * 10, "not a readable"),
    ],
)
def test_unsupported_layouts_are_refused(build: Callable[[], bytes], reason: str) -> None:
    with pytest.raises(NotEncodable, match=reason):
        encode_rendition(build())


def test_float_pixel_data_is_refused() -> None:
    ds = _quiet_read(_part10(np.zeros((1, 4, 4), np.uint16)))
    del ds.PixelData
    ds.FloatPixelData = np.zeros(16, np.float32).tobytes()
    ds.BitsAllocated = 32
    out = io.BytesIO()
    ds.save_as(out)
    with pytest.raises(NotEncodable, match="float pixel data"):
        encode_rendition(out.getvalue())


# --------------------------------------------------------------------------- structure


def test_decomposition_levels() -> None:
    assert codestream.decomposition_levels(512, 512) == 5
    assert codestream.decomposition_levels(3, 3) == 5
    assert codestream.decomposition_levels(2048, 2048) == 5
    assert codestream.decomposition_levels(2049, 100) == 6
    assert codestream.decomposition_levels(4096, 4096) == 6
    assert codestream.decomposition_levels(1, 8193) == 8


def test_extended_offset_table_when_basic_offsets_overflow() -> None:
    frames = _ramp((3, 40, 50), "uint16", seed=9)
    original = _part10(frames)
    ds = pixels.read_dataset(original)
    layout = pixels.layout_of(ds)
    codestreams = [encoder.encode_frame(f) for f in pixels.iter_frames(ds, layout)]
    data = encapsulation.build_file(ds, layout, codestreams, bot_limit=0)
    stored = _quiet_read(data)
    offsets = np.frombuffer(stored.ExtendedOffsetTable, "<u8")
    lengths = np.frombuffer(stored.ExtendedOffsetTableLengths, "<u8")
    assert list(lengths) == [len(c) + len(c) % 2 for c in codestreams]  # item lengths (padded)
    assert offsets[0] == 0 and len(offsets) == 3
    spans = frame_spans(data)
    assert [data[o : o + n] for o, n in spans] == codestreams
    assert np.array_equal(stored.pixel_array, frames)


def test_spans_exclude_the_pad_byte_of_odd_codestreams() -> None:
    for seed in range(20):
        frames = _ramp((1, 17, 19), "uint8", seed=seed)
        rendition = encode_rendition(_part10(frames))
        (span,) = rendition.frames
        if span.length % 2:
            assert rendition.data[span.offset + span.length] == 0  # the pad
            assert rendition.data[span.offset + span.length - 2 : span.offset + span.length] == b"\xff\xd9"
            assert frame_spans(rendition.data) == rendition.frames
            return
    pytest.fail("no odd-length codestream in 20 tries")


def test_frame_spans_refuses_other_files() -> None:
    with pytest.raises(ValueError, match="not a DICOM"):
        frame_spans(b"garbage" * 40)
    with pytest.raises(ValueError, match="encapsulated"):
        frame_spans(CORPUS["pydicom/CT_small.dcm"].read_bytes())
    with pytest.raises(ValueError, match="fragments"):  # JPEG 2000 original, 1 frame per item?
        frame_spans(_corpus_with_fragments())


def _corpus_with_fragments() -> bytes:
    # A JPEG 2000 file re-encapsulated with 2 fragments per frame: not a rendition layout.
    ds = _quiet_read(CORPUS["pydicom/MR_small_jp2klossless.dcm"])
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([frame], fragments_per_frame=2)
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


def test_rendition_frame_numbers_are_one_based() -> None:
    rendition = encode_rendition(CORPUS["pydicom-data/emri_small.dcm"].read_bytes())
    assert rendition.number_of_frames == 10
    assert bytes(rendition.frame(10))[-2:] == b"\xff\xd9"
    for wrong in (0, 11):
        with pytest.raises(IndexError):
            rendition.frame(wrong)
    assert rendition.original_pixel_bytes == 10 * 64 * 64 * 2
    assert rendition.encoded_bytes == sum(n for _, n in rendition.frames)
    assert rendition.compression_ratio > 1.5
    assert rendition.encode_seconds > 0


# --------------------------------------------------------------------------- verification


def test_a_wrong_decode_is_a_verification_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = imagecodecs.htj2k_decode

    def off_by_one(data: bytes) -> NDArray[np.generic]:
        out = np.array(real(data))
        out.reshape(-1)[7] += 1
        return out

    monkeypatch.setattr(imagecodecs, "htj2k_decode", off_by_one)
    with pytest.raises(VerificationError, match="1 of 4096 decoded samples differ"):
        encode_rendition(CORPUS["pydicom/MR_small.dcm"].read_bytes())


def test_a_wrong_progression_order_is_a_verification_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = imagecodecs.htj2k_encode

    def lrcp(data: NDArray[np.generic], **kwargs: object) -> bytes:
        cs = bytearray(real(data, **kwargs))  # type: ignore[arg-type]
        cod = cs.index(b"\xff\x52")
        cs[cod + 5] = 0  # progression order byte: LRCP
        return bytes(cs)

    monkeypatch.setattr(imagecodecs, "htj2k_encode", lrcp)
    with pytest.raises(VerificationError, match="LRCP, not RPCL"):
        encode_rendition(CORPUS["pydicom/MR_small.dcm"].read_bytes())


# --------------------------------------------------------------------------- lossy history


def _without_lossy_flag(key: str) -> bytes:
    ds = _quiet_read(CORPUS[key])
    for keyword in ("LossyImageCompression", "LossyImageCompressionMethod", "LossyImageCompressionRatio"):
        if keyword in ds:
            delattr(ds, keyword)
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


@pytest.mark.parametrize(
    ("key", "method"),
    [
        ("pydicom-data/MR2_J2KI.dcm", "ISO_15444_1"),  # 9/7 wavelet
        ("pydicom/JPGExtended.dcm", "ISO_10918_1"),
        ("pydicom/SC_rgb_jpeg_app14_dcmd.dcm", "ISO_10918_1"),
        ("pydicom/JPEGLSNearLossless_08.dcm", "ISO_14495_1"),  # NEAR > 0
        ("pydicom-data/MR2_J2KR.dcm", None),
        ("pydicom-data/emri_small_jpeg_ls_lossless.dcm", None),
        ("pydicom/MR_small_RLE.dcm", None),
    ],
)
def test_lossy_history_is_flagged_on_evidence_only(key: str, method: str | None) -> None:
    stored = _quiet_read(encode_rendition(_without_lossy_flag(key)).data)
    if method is None:
        assert "LossyImageCompression" not in stored
    else:
        assert stored.LossyImageCompression == "01"
        assert stored.LossyImageCompressionMethod == method
        assert float(stored.LossyImageCompressionRatio) > 1


def test_lossy_flag_of_the_original_is_kept() -> None:
    stored = _quiet_read(encode_rendition(CORPUS["pydicom-data/emri_small_jpeg_ls_lossless.dcm"].read_bytes()).data)
    assert stored.LossyImageCompression == "00"


# --------------------------------------------------------------------------- decoders and frames


def test_jpeg_lossless_plugin_matches_an_independent_decoder() -> None:
    # imagecodecs' liblj92 (ljpeg) is a separate lossless-JPEG implementation from libjpeg-turbo.
    for key in ("pydicom-data/JPEG-LL.dcm", "pydicom-data/JPGLosslessP14SV1_1s_1f_8b.dcm"):
        ds = _quiet_read(CORPUS[key])
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
        expected = imagecodecs.ljpeg_decode(frame)
        if ds.PixelRepresentation:
            expected = expected.view(f"i{expected.dtype.itemsize}")
        assert np.array_equal(pixel_array(ds), expected)
    # RGB lossless JPEG against the uncompressed original it was made from
    lossless = pixel_array(_quiet_read(CORPUS["pydicom/SC_rgb_jpeg_gdcm.dcm"]))
    assert np.array_equal(lossless, pixel_array(_quiet_read(CORPUS["pydicom-data/SC_rgb.dcm"])))


def test_uncompressed_frames_agree_across_transfer_syntaxes() -> None:
    variants = [
        "pydicom-data/emri_small.dcm",
        "pydicom-data/emri_small_big_endian.dcm",
        "pydicom-data/emri_small_RLE.dcm",
        "pydicom-data/emri_small_jpeg_2k_lossless.dcm",
        "pydicom-data/emri_small_jpeg_ls_lossless.dcm",
    ]
    originals = [CORPUS[key].read_bytes() for key in variants]
    for number in (1, 5, 10):
        frames = {uncompressed_frame(original, number) for original in originals}
        assert len(frames) == 1
        assert len(frames.pop()) == 64 * 64 * 2
    with pytest.raises(IndexError):
        uncompressed_frame(originals[0], 0)
    with pytest.raises(IndexError):
        uncompressed_frame(originals[0], 11)


def test_uncompressed_frame_of_one_bit_data_is_packed() -> None:
    original = CORPUS["pydicom-data/liver.dcm"].read_bytes()
    frames = pixel_array(_quiet_read(original))
    for number in (1, 3):
        assert uncompressed_frame(original, number) == pack_bits(frames[number - 1], pad=False)


def test_uncompressed_frame_of_big_endian_planar_rgb_keeps_its_planar_layout() -> None:
    original = CORPUS["pydicom/ExplVR_BigEnd.dcm"].read_bytes()
    ds = _quiet_read(original)
    assert ds.PlanarConfiguration == 1
    expected = np.ascontiguousarray(pixel_array(ds).transpose(2, 0, 1)).tobytes()
    assert uncompressed_frame(original, 1) == expected


def test_encoding_from_a_thread_pool_is_deterministic() -> None:
    keys = [
        "pydicom/CT_small.dcm",
        "pydicom/MR_small_RLE.dcm",
        "pydicom-data/emri_small_jpeg_2k_lossless.dcm",
        "pydicom-data/US1_UNCR.dcm",
        "pydicom-data/JPEG-LL.dcm",
        "pydicom-data/693_UNCI.dcm",
    ]
    originals = [CORPUS[key].read_bytes() for key in keys]
    sequential = [encode_rendition(o).data for o in originals]
    with ThreadPoolExecutor(max_workers=2) as pool:
        parallel = [r.data for r in pool.map(encode_rendition, originals * 2)]
    assert parallel == sequential * 2


def test_uncompressed_frame_refusals() -> None:
    with pytest.raises(NotEncodable, match="bytes"):  # native data shorter than declared
        uncompressed_frame(CORPUS["pydicom/MR_truncated.dcm"].read_bytes(), 1)
    with pytest.raises(NotEncodable, match="no Pixel Data"):
        uncompressed_frame(CORPUS["pydicom/rtplan.dcm"].read_bytes(), 1)
    with pytest.raises(NotEncodable, match="not a readable"):
        uncompressed_frame(b"\x00" * 300, 1)


def test_jpeg_plugin_registration_is_idempotent() -> None:
    jpeg_decoder.register()
    jpeg_decoder.register()
    for syntax in jpeg_decoder.DECODER_DEPENDENCIES:
        assert jpeg_decoder.LABEL in get_decoder(syntax).available_plugins
