"""HTTP content coding and validators for the viewer's files (RFC 9110 §12.5.3, §13.1.2).

Pure functions: which of the prepared codings a client's ``Accept-Encoding`` allows, and
whether its ``If-None-Match`` names the representation that would be sent.

>>> choose("gzip, deflate, br, zstd", ("br", "gzip"))
'br'
>>> choose("br;q=0, gzip;q=0.5", ("br", "gzip"))
'gzip'
>>> choose("", ("br", "gzip"))
'identity'
>>> none_match('W/"a", "b"', '"b"'), none_match('"a"', '"b"'), none_match("*", '"b"')
(True, False, True)
"""

from __future__ import annotations

from collections.abc import Iterable

IDENTITY = "identity"
# Server preference among codings the client weighs equally: smallest first.
PREFERENCE = ("br", "gzip")
# What each coding adds to a representation's entity tag (one tag per representation:
# caches keep the tag of the bytes they stored, so the codings must not share one).
ETAG_SUFFIX = {IDENTITY: "", "gzip": "-gz", "br": "-br"}
_MAX_ITEMS = 32  # a header with more codings than any browser sends is read this far only


def _weights(accept_encoding: str) -> dict[str, float]:
    weights: dict[str, float] = {}
    for item in accept_encoding.split(",")[:_MAX_ITEMS]:
        name, _, params = item.strip().partition(";")
        name = name.strip().lower()
        if not name:
            continue
        weight = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = min(max(float(value.strip()), 0.0), 1.0)
                except ValueError:
                    weight = 0.0  # a malformed weight accepts nothing rather than everything
        weights.setdefault(name, weight)
    return weights


def choose(accept_encoding: str, available: Iterable[str]) -> str:
    """The coding to send: the client's highest weight among ``available``, ties broken by
    :data:`PREFERENCE`; ``identity`` when none is acceptable (also when identity itself is
    refused: an unencoded answer is still the most useful one)."""
    weights = _weights(accept_encoding)
    star = weights.get("*", 0.0)
    best, best_weight = IDENTITY, 0.0
    for coding in PREFERENCE:
        if coding not in available:
            continue
        weight = weights.get(coding, star)
        if weight > best_weight:
            best, best_weight = coding, weight
    # Unnamed, identity is merely acceptable (§12.5.3), not preferred: only a client that
    # weighs it explicitly above the codings gets it instead.
    if best != IDENTITY and weights.get(IDENTITY, 0.0) > best_weight:
        return IDENTITY
    return best


def etag(digest: str, coding: str) -> str:
    """The strong entity tag of one coding of a file whose identity bytes hash to ``digest``."""
    return f'"{digest}{ETAG_SUFFIX[coding]}"'


def none_match(if_none_match: str, current: str) -> bool:
    """True when ``If-None-Match`` matches ``current`` (weak comparison, as §13.1.2 says)."""
    value = if_none_match.strip()
    if value == "*":
        return True
    wanted = current.removeprefix("W/")
    for tag in value.split(",")[:_MAX_ITEMS]:
        if tag.strip().removeprefix("W/") == wanted:
            return True
    return False
