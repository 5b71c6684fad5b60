"""Why a rendition was not produced."""

from __future__ import annotations


class NotEncodable(Exception):
    """The instance has no rendition by design (no pixel data, float pixels, > 16 bits,
    a colour model we do not re-encode, undecodable pixel data...).

    Not a failure to retry: the instance is served from its original.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class VerificationError(Exception):
    """An encoded frame did not decode to exactly the original pixels (or its codestream
    does not have the structure the transfer syntax promises). The rendition is dropped;
    this is a bug or a library regression, never something to serve."""
