"""The study token the inference service reads pixels with, as the AI package needs it.

:class:`TokenIssuer` is all the runner and the service know; ``app.py`` gives them
:class:`ShareTokens` over the gate's share registry (anything with its ``create`` and
``revoke``), so the AI package does not depend on the gate's concrete classes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class TokenIssuer(Protocol):
    def issue(self, study_uid: str, job_id: str) -> tuple[str, Callable[[], None]]:
        """A short-lived read-only token for one study, and a function that revokes it."""


class _Share(Protocol):
    @property
    def id(self) -> str: ...


class ShareStore(Protocol):
    """What :class:`ShareTokens` uses of the gate's share registry."""

    def create(self, study_uid: str, created_by: str, ttl_seconds: int) -> tuple[_Share, str]: ...

    def revoke(self, share_id: str) -> object: ...


class ShareTokens:
    """Tokens minted exactly like share links (a revocable share row, audited under the
    subject ``share:<id>``), created by ``ai:<job id>``."""

    def __init__(self, shares: ShareStore, ttl_seconds: int) -> None:
        self._shares = shares
        self._ttl = ttl_seconds

    def issue(self, study_uid: str, job_id: str) -> tuple[str, Callable[[], None]]:
        share, token = self._shares.create(study_uid, f"ai:{job_id}", self._ttl)

        def revoke() -> None:
            self._shares.revoke(share.id)

        return token, revoke
