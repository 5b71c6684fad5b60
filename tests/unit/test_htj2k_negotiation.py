"""PS3.18 Accept negotiation for frames and instances, and multipart/related bodies."""

from __future__ import annotations

import pytest

from neuronova import multipart
from neuronova.errors import HttpError
from neuronova.htj2k.negotiation import (
    Available,
    Choice,
    NotAcceptable,
    Representation,
    negotiate_frames,
    negotiate_instance,
    parse_accept,
)

ELE = "1.2.840.10008.1.2.1"
ILE = "1.2.840.10008.1.2"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.70"
HT_201, HT_202, HT_203 = "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"

OHIF = "multipart/related; type=application/octet-stream; transfer-syntax=*"
NATIVE_WITH_HTJ2K = Available(ELE, has_htj2k=True, can_uncompress=True)
NATIVE_NO_HTJ2K = Available(ELE, has_htj2k=False, can_uncompress=True)
J2K_WITH_HTJ2K = Available(J2K_LOSSLESS, has_htj2k=True, can_uncompress=True)
J2K_NO_HTJ2K = Available(J2K_LOSSLESS, has_htj2k=False, can_uncompress=True)
J2K_UNDECODABLE = Available(J2K_LOSSLESS, has_htj2k=False, can_uncompress=False)

HT, ORIG, UNC = Representation.HTJ2K, Representation.ORIGINAL, Representation.UNCOMPRESSED
OCTET = "application/octet-stream"


def frames(accept: str | None, available: Available, single: bool = False) -> tuple[object, ...]:
    choice = negotiate_frames(accept, available, single_part_ok=single)
    return choice.representation, choice.transfer_syntax, choice.media_type, choice.multipart


@pytest.mark.parametrize(
    ("accept", "available", "expected"),
    [
        # OHIF's request: HTJ2K when there is a rendition, labelled .202 in the part
        (OHIF, NATIVE_WITH_HTJ2K, (HT, HT_202, OCTET, True)),
        (OHIF, J2K_WITH_HTJ2K, (HT, HT_202, OCTET, True)),
        # transfer-syntax=* without a rendition: the original as stored if compressed ...
        (OHIF, J2K_NO_HTJ2K, (ORIG, J2K_LOSSLESS, OCTET, True)),
        # ... else uncompressed
        (OHIF, NATIVE_NO_HTJ2K, (UNC, ELE, OCTET, True)),
        # octet-stream without transfer-syntax means Explicit VR Little Endian (PS3.18)
        ('multipart/related; type="application/octet-stream"', NATIVE_WITH_HTJ2K, (UNC, ELE, OCTET, True)),
        ('multipart/related; type="application/octet-stream"', J2K_WITH_HTJ2K, (UNC, ELE, OCTET, True)),
        (
            f'multipart/related; type="application/octet-stream"; transfer-syntax={ELE}',
            J2K_WITH_HTJ2K,
            (UNC, ELE, OCTET, True),
        ),
        # an explicit HTJ2K syntax: answered with exactly the UID asked
        (
            f"multipart/related; type=application/octet-stream; transfer-syntax={HT_202}",
            NATIVE_WITH_HTJ2K,
            (HT, HT_202, OCTET, True),
        ),
        (
            f"multipart/related; type=application/octet-stream; transfer-syntax={HT_201}",
            NATIVE_WITH_HTJ2K,
            (HT, HT_201, OCTET, True),
        ),
        (
            f"multipart/related; type=application/octet-stream; transfer-syntax={HT_203}",
            NATIVE_WITH_HTJ2K,
            (HT, HT_203, OCTET, True),
        ),
        # image/jphc: its PS3.18 default is .201, an explicit parameter is honoured
        ('multipart/related; type="image/jphc"', NATIVE_WITH_HTJ2K, (HT, HT_201, "image/jphc", True)),
        (
            f'multipart/related; type="image/jphc"; transfer-syntax={HT_202}',
            NATIVE_WITH_HTJ2K,
            (HT, HT_202, "image/jphc", True),
        ),
        (
            'multipart/related; type="image/jphc"; transfer-syntax=*',
            NATIVE_WITH_HTJ2K,
            (HT, HT_202, "image/jphc", True),
        ),
        # the original's own syntax asked explicitly
        (
            f"multipart/related; type=application/octet-stream; transfer-syntax={J2K_LOSSLESS}",
            J2K_WITH_HTJ2K,
            (ORIG, J2K_LOSSLESS, OCTET, True),
        ),
        ('multipart/related; type="image/jp2"', J2K_WITH_HTJ2K, (ORIG, J2K_LOSSLESS, "image/jp2", True)),
        # */* and no header: the PS3.18 default, uncompressed
        ("*/*", J2K_WITH_HTJ2K, (UNC, ELE, OCTET, True)),
        (None, NATIVE_WITH_HTJ2K, (UNC, ELE, OCTET, True)),
        ("", NATIVE_WITH_HTJ2K, (UNC, ELE, OCTET, True)),
        # */* when nothing can be decoded: the original as stored, in its own media type
        ("*/*", J2K_UNDECODABLE, (ORIG, J2K_LOSSLESS, "image/jp2", True)),
    ],
)
def test_frame_negotiation(accept: str | None, available: Available, expected: tuple[object, ...]) -> None:
    assert frames(accept, available) == expected


@pytest.mark.parametrize(
    ("accept", "available"),
    [
        # HTJ2K asked, no rendition, and the original is something else
        (f"multipart/related; type=application/octet-stream; transfer-syntax={HT_202}", NATIVE_NO_HTJ2K),
        ('multipart/related; type="image/jphc"', J2K_NO_HTJ2K),
        # a compressed syntax that is not the original's: never transcoded, never mislabelled
        (f"multipart/related; type=application/octet-stream; transfer-syntax={JPEG_LOSSLESS}", J2K_WITH_HTJ2K),
        ('multipart/related; type="image/jpeg"', J2K_WITH_HTJ2K),
        # image/jp2 means .90 by default: a .91 original does not match it
        ('multipart/related; type="image/jp2"', Available("1.2.840.10008.1.2.4.91", False, True)),
        # uncompressed asked but the decoder is missing
        ('multipart/related; type="application/octet-stream"', J2K_UNDECODABLE),
        # implicit VR is not a frame syntax
        (f"multipart/related; type=application/octet-stream; transfer-syntax={ILE}", NATIVE_WITH_HTJ2K),
        # q=0 excludes
        (f"{OHIF}; q=0", NATIVE_WITH_HTJ2K),
        ("text/html", NATIVE_WITH_HTJ2K),
        ("multipart/related; type=application/dicom", NATIVE_WITH_HTJ2K),
    ],
)
def test_frame_negotiation_refusals(accept: str, available: Available) -> None:
    with pytest.raises(NotAcceptable) as refused:
        negotiate_frames(accept, available)
    assert refused.value.status == 406
    assert isinstance(refused.value, HttpError)
    assert "available" in refused.value.message


def test_quality_values_rank_before_size() -> None:
    accept = f'multipart/related; type="application/octet-stream"; transfer-syntax={ELE}; q=0.9, {OHIF}; q=0.5'
    assert frames(accept, NATIVE_WITH_HTJ2K)[0] is UNC
    accept = f'multipart/related; type="application/octet-stream"; transfer-syntax={ELE}; q=0.5, {OHIF}; q=0.9'
    assert frames(accept, NATIVE_WITH_HTJ2K)[0] is HT


def test_equal_quality_prefers_the_smallest_representation() -> None:
    accept = (
        f'multipart/related; type="application/octet-stream"; transfer-syntax={ELE}, '
        f'multipart/related; type="application/octet-stream"; transfer-syntax={J2K_LOSSLESS}, '
        'multipart/related; type="image/jphc"'
    )
    assert frames(accept, J2K_WITH_HTJ2K)[:2] == (HT, HT_201)
    assert frames(accept, J2K_NO_HTJ2K)[:2] == (ORIG, J2K_LOSSLESS)
    assert frames(accept, NATIVE_NO_HTJ2K)[:2] == (UNC, ELE)


def test_a_later_acceptable_range_is_used_when_the_first_is_not() -> None:
    accept = f'multipart/related; type="image/jpeg", {OHIF}'
    assert frames(accept, J2K_WITH_HTJ2K)[:2] == (HT, HT_202)
    assert frames("text/html, */*;q=0.1", J2K_WITH_HTJ2K)[:2] == (UNC, ELE)


def test_single_part_only_when_allowed() -> None:
    assert frames("image/jphc", NATIVE_WITH_HTJ2K, single=True) == (HT, HT_201, "image/jphc", False)
    assert frames(f"application/octet-stream; transfer-syntax={HT_202}", NATIVE_WITH_HTJ2K, single=True) == (
        HT,
        HT_202,
        OCTET,
        False,
    )
    assert frames("application/octet-stream", J2K_WITH_HTJ2K, single=True) == (UNC, ELE, OCTET, False)
    with pytest.raises(NotAcceptable):
        negotiate_frames("image/jphc", NATIVE_WITH_HTJ2K)  # several frames: multipart only


def test_part_content_type_carries_the_transfer_syntax() -> None:
    choice = negotiate_frames(OHIF, NATIVE_WITH_HTJ2K)
    assert choice.part_content_type == f"application/octet-stream; transfer-syntax={HT_202}"


@pytest.mark.parametrize(
    ("accept", "available", "expected"),
    [
        ('multipart/related; type="application/dicom"; transfer-syntax=*', NATIVE_WITH_HTJ2K, (HT, HT_202)),
        (f'multipart/related; type="application/dicom"; transfer-syntax={HT_202}', J2K_WITH_HTJ2K, (HT, HT_202)),
        ('multipart/related; type="application/dicom"; transfer-syntax=*', J2K_NO_HTJ2K, (ORIG, J2K_LOSSLESS)),
        # no transfer-syntax: Explicit VR Little Endian (as stored when it already is)
        ('multipart/related; type="application/dicom"', NATIVE_WITH_HTJ2K, (ORIG, ELE)),
        ('multipart/related; type="application/dicom"', J2K_WITH_HTJ2K, (UNC, ELE)),
        ('multipart/related; type="application/dicom"', Available(ILE, True, True), (UNC, ELE)),
        (
            f'multipart/related; type="application/dicom"; transfer-syntax={J2K_LOSSLESS}',
            J2K_WITH_HTJ2K,
            (ORIG, J2K_LOSSLESS),
        ),
        (
            f'multipart/related; type="application/dicom"; transfer-syntax={ILE}',
            Available(ILE, True, True),
            (ORIG, ILE),
        ),
        ("*/*", J2K_WITH_HTJ2K, (UNC, ELE)),
        ("*/*", NATIVE_WITH_HTJ2K, (ORIG, ELE)),
        ("*/*", J2K_UNDECODABLE, (ORIG, J2K_LOSSLESS)),
        (None, J2K_UNDECODABLE, (ORIG, J2K_LOSSLESS)),
    ],
)
def test_instance_negotiation(accept: str | None, available: Available, expected: tuple[object, ...]) -> None:
    choice = negotiate_instance(accept, available)
    assert (choice.representation, choice.transfer_syntax) == expected
    assert choice.media_type == "application/dicom"
    assert choice.multipart


@pytest.mark.parametrize(
    "accept",
    [
        # the Part 10 rendition says .202 in its meta: it cannot be sent as .201 or .203
        f'multipart/related; type="application/dicom"; transfer-syntax={HT_201}',
        f'multipart/related; type="application/dicom"; transfer-syntax={HT_203}',
        f'multipart/related; type="application/dicom"; transfer-syntax={JPEG_LOSSLESS}',
        'multipart/related; type="application/octet-stream"',
        "image/jphc",
    ],
)
def test_instance_negotiation_refusals(accept: str) -> None:
    with pytest.raises(NotAcceptable):
        negotiate_instance(accept, J2K_WITH_HTJ2K)


def test_single_part_instance() -> None:
    choice = negotiate_instance("application/dicom; transfer-syntax=*", NATIVE_WITH_HTJ2K)
    assert choice == Choice(HT, HT_202, "application/dicom", False)


def test_parse_accept_handles_quotes_params_and_bad_q() -> None:
    ranges = parse_accept(
        'multipart/related; type="application/octet-stream; x=1"; transfer-syntax=*;q=0.5, '
        "IMAGE/JPHC ; Q=0.7, text/plain; q=abc, image/png; q=2"
    )
    assert [(r.media_type, r.q) for r in ranges] == [("multipart/related", 0.5), ("image/jphc", 0.7)]
    assert ranges[0].params == {"type": "application/octet-stream; x=1", "transfer-syntax": "*"}
    assert [r.media_type for r in parse_accept(None)] == ["*/*"]


# --------------------------------------------------------------------------- multipart


def test_multipart_round_trip_keeps_each_part_content_type() -> None:
    parts = [
        multipart.Part(f"application/octet-stream; transfer-syntax={HT_202}", b"\xff\x4f\x00\r\n--x\r\n"),
        multipart.Part(f"application/octet-stream; transfer-syntax={ELE}", bytearray(b"\x00" * 7)),
        multipart.Part("application/octet-stream", memoryview(b"abc"), {"Content-Location": "/frames/3"}),
    ]
    body, content_type = multipart.build(parts, "application/octet-stream")
    assert content_type.startswith('multipart/related; type="application/octet-stream"; boundary=')
    parsed = multipart.parse(body, content_type)
    assert [p.content_type for p in parsed] == [p.content_type for p in parts]
    assert [bytes(p.body) for p in parsed] == [bytes(p.body) for p in parts]
    assert parsed[2].headers == {"content-location": "/frames/3"}
    assert body.endswith(b"--\r\n")


def test_multipart_refuses_a_boundary_found_in_a_part() -> None:
    with pytest.raises(ValueError, match="boundary"):
        multipart.build([multipart.Part("application/octet-stream", b"..--abc..")], OCTET, boundary="abc")


def test_multipart_boundaries_are_fresh() -> None:
    part = [multipart.Part(OCTET, b"x")]
    assert multipart.build(part, OCTET)[1] != multipart.build(part, OCTET)[1]


def test_multipart_wire_format() -> None:
    body, content_type = multipart.build(
        [multipart.Part("image/jphc; transfer-syntax=" + HT_202, b"DATA")], "image/jphc", boundary="B"
    )
    assert content_type == 'multipart/related; type="image/jphc"; boundary=B'
    assert body == b"--B\r\nContent-Type: image/jphc; transfer-syntax=" + HT_202.encode() + b"\r\n\r\nDATA\r\n--B--\r\n"
