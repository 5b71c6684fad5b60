"""Reading a JPEG 2000 / HTJ2K codestream's main header (ISO/IEC 15444-1 Annex A).

imagecodecs does not let us choose the progression order (it relies on OpenJPH's default,
RPCL), so every encoded frame is checked here for what transfer syntax .202 promises
(PS3.5 A.4.4): RPCL, TLM present, enough decomposition levels, HT code-blocks, reversible.
A library upgrade that changes a default then fails loudly instead of mislabelling frames.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SOC = 0xFF4F
SIZ = 0xFF51
CAP = 0xFF50
COD = 0xFF52
TLM = 0xFF55
SOT = 0xFF90
EOC = 0xFFD9

#: COD progression order byte (15444-1 Table A.16).
PROGRESSION_ORDERS = {0: "LRCP", 1: "RLCP", 2: "RPCL", 3: "PCRL", 4: "CPRL"}

#: PS3.5 A.4.4 for .202: "the width or height of the base resolution" must be <= 64.
MAX_BASE_RESOLUTION = 64
#: OpenJPH's default; on the CT/MR test images 5 levels gave the smallest lossless output
#: (fewer levels are clearly worse, more are slightly worse), so use at least that many.
MIN_DECOMPOSITION_LEVELS = 5


class CodestreamError(ValueError):
    """The bytes are not a JPEG 2000 codestream this module can read."""


@dataclass(frozen=True)
class CodestreamInfo:
    width: int
    height: int
    components: int
    precision: int  # bits of component 0 (SIZ Ssiz)
    signed: bool
    rsiz: int
    has_cap: bool  # CAP marker: a Part 15 (HTJ2K) capability declaration
    ht_codeblocks: bool  # COD code-block style bit 6: HT code-blocks
    progression: str  # "RPCL", ...
    layers: int
    mct: bool  # multiple component (colour) transform in use
    levels: int  # decomposition levels
    reversible: bool  # 5/3 reversible wavelet (lossless) rather than 9/7
    has_tlm: bool
    tile_parts: int  # number of SOT markers (tile-parts) in the codestream
    ends_with_eoc: bool

    @property
    def base_resolution(self) -> tuple[int, int]:
        """(width, height) of the lowest resolution level."""
        scale = 1 << self.levels
        return -(-self.width // scale), -(-self.height // scale)


def decomposition_levels(rows: int, columns: int) -> int:
    """Levels needed so that both sides of the base resolution are <= 64 pixels
    (PS3.5 says "width or height"; we satisfy the stricter reading), and never fewer
    than OpenJPH's default of 5, which compresses best."""
    levels = 0
    while -(-max(rows, columns) // (1 << levels)) > MAX_BASE_RESOLUTION:
        levels += 1
    return max(levels, MIN_DECOMPOSITION_LEVELS)


def parse(codestream: bytes | bytearray | memoryview) -> CodestreamInfo:
    """Parse the main header and count tile-parts (walks SOT lengths, not the data)."""
    buf = memoryview(codestream)
    if len(buf) < 4 or _u16(buf, 0) != SOC:
        raise CodestreamError("not a JPEG 2000 codestream (no SOC marker)")
    pos = 2
    siz: tuple[int, int, int, int, int, bool] | None = None
    has_cap = has_tlm = False
    cod: tuple[int, int, int, int, int, int] | None = None
    while True:
        if pos + 4 > len(buf):
            raise CodestreamError("main header is truncated")
        marker = _u16(buf, pos)
        if marker == SOT:
            break
        if marker >> 8 != 0xFF:
            raise CodestreamError(f"expected a marker at byte {pos}, found {marker:#06x}")
        length = _u16(buf, pos + 2)
        segment = buf[pos + 4 : pos + 2 + length]
        if len(segment) != length - 2:
            raise CodestreamError(f"marker segment {marker:#06x} is truncated")
        if marker == SIZ:
            siz = _parse_siz(segment)
        elif marker == CAP:
            has_cap = True
        elif marker == COD:
            if len(segment) < 10:
                raise CodestreamError("COD marker segment is too short")
            # Scod, SGcod (progression, layers, MCT), SPcod (levels, xcb, ycb, style, transform)
            _, progression, layers, mct, levels = struct.unpack_from(">BBHBB", segment, 0)
            style, transform = segment[8], segment[9]
            cod = (progression, layers, mct, levels, style, transform)
        elif marker == TLM:
            has_tlm = True
        pos += 2 + length
    if siz is None or cod is None:
        raise CodestreamError("main header lacks SIZ or COD")
    tile_parts, ends_with_eoc = _count_tile_parts(buf, pos)
    width, height, components, precision, rsiz, signed = siz
    progression, layers, mct, levels, style, transform = cod
    return CodestreamInfo(
        width=width,
        height=height,
        components=components,
        precision=precision,
        signed=signed,
        rsiz=rsiz,
        has_cap=has_cap,
        ht_codeblocks=bool(style & 0x40),
        progression=PROGRESSION_ORDERS.get(progression, f"unknown({progression})"),
        layers=layers,
        mct=bool(mct),
        levels=levels,
        reversible=transform == 1,
        has_tlm=has_tlm,
        tile_parts=tile_parts,
        ends_with_eoc=ends_with_eoc,
    )


def irreversible(codestream: bytes | bytearray | memoryview) -> bool:
    """True when the codestream uses the 9/7 irreversible wavelet (i.e. it is lossy)."""
    return not parse(codestream).reversible


def rpcl_problems(info: CodestreamInfo, rows: int, columns: int, samples: int) -> list[str]:
    """What in ``info`` breaks the promises of transfer syntax .202 (empty when none)."""
    problems = []
    if (info.width, info.height, info.components) != (columns, rows, samples):
        problems.append(f"SIZ says {info.width}x{info.height}x{info.components}, expected {columns}x{rows}x{samples}")
    if not (info.has_cap and info.ht_codeblocks):
        problems.append("not an HTJ2K codestream (no CAP marker or no HT code-blocks)")
    if info.progression != "RPCL":
        problems.append(f"progression order is {info.progression}, not RPCL")
    if not info.reversible:
        problems.append("irreversible (9/7) wavelet")
    if not info.has_tlm:
        problems.append("no TLM marker")
    if max(info.base_resolution) > MAX_BASE_RESOLUTION:
        problems.append(f"base resolution {info.base_resolution} exceeds 64 pixels")
    if info.tile_parts != info.levels + 1:
        problems.append(f"{info.tile_parts} tile-parts, expected one per resolution")
    if not info.ends_with_eoc:
        problems.append("no EOC marker at the end")
    return problems


def _u16(buf: memoryview, pos: int) -> int:
    return int.from_bytes(buf[pos : pos + 2], "big")


def _parse_siz(segment: memoryview) -> tuple[int, int, int, int, int, bool]:
    if len(segment) < 39:
        raise CodestreamError("SIZ marker segment is too short")
    rsiz, xsiz, ysiz, xosiz, yosiz = struct.unpack_from(">HIIII", segment, 0)
    components = struct.unpack_from(">H", segment, 34)[0]
    ssiz = segment[36]
    return xsiz - xosiz, ysiz - yosiz, components, (ssiz & 0x7F) + 1, rsiz, bool(ssiz & 0x80)


def _count_tile_parts(buf: memoryview, pos: int) -> tuple[int, bool]:
    count = 0
    while pos + 12 <= len(buf) and _u16(buf, pos) == SOT:
        count += 1
        psot = int.from_bytes(buf[pos + 6 : pos + 10], "big")
        if psot == 0:  # last tile-part runs to EOC
            return count, _u16(buf, len(buf) - 2) == EOC
        pos += psot
    return count, pos + 2 <= len(buf) and _u16(buf, pos) == EOC
