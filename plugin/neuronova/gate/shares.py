"""Share links: short-lived, read-only tokens for one study, signed by the plugin, revocable."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import insert, select, update

from ..store import Database
from ..store.schema import shares as shares_table
from ..store.versions import SHARES, bump
from .tokens import PluginSigner


@dataclass(frozen=True)
class Share:
    id: str
    study_uid: str
    created_by: str
    created_at: float
    expires_at: float
    revoked_at: float | None


class ShareRegistry:
    def __init__(self, db: Database, signer: PluginSigner, on_revoke: Callable[[str], None] | None = None) -> None:
        self._db = db
        self._signer = signer
        # Told of each revocation that its caller does not audit itself (e.g. the AI token's).
        self._on_revoke = on_revoke
        self._lock = threading.Lock()
        self._revoked: set[str] = set()
        self.reload()

    def reload(self) -> None:
        """Read the revocations made by any node (the "shares" counter moved). Added to the
        set, never replacing it: a revocation made here meanwhile is not lost."""
        with self._db.engine.connect() as connection:
            rows = connection.execute(
                select(shares_table.c.id).where(shares_table.c.revoked_at.is_not(None))
            ).all()
        revoked = {row.id for row in rows}
        with self._lock:
            self._revoked |= revoked

    def create(self, study_uid: str, created_by: str, ttl_seconds: int) -> tuple[Share, str]:
        share_id = secrets.token_urlsafe(16)
        now = time.time()
        share = Share(share_id, study_uid, created_by, now, now + ttl_seconds, None)
        with self._db.engine.begin() as connection:
            connection.execute(insert(shares_table).values(**share.__dict__))
        token = self._signer.mint(
            "share", {"sub": f"share:{share_id}", "jti": share_id, "study": study_uid, "by": created_by}, ttl_seconds
        )
        return share, token

    def get(self, share_id: str) -> Share | None:
        with self._db.engine.connect() as connection:
            row = connection.execute(select(shares_table).where(shares_table.c.id == share_id)).first()
        return Share(**row._mapping) if row else None

    def revoke(self, share_id: str, audited: bool = False) -> None:
        """Revoke a share; ``audited``: the caller records it (else ``on_revoke`` is told)."""
        with self._lock:
            self._revoked.add(share_id)  # effective for the next request, before the write
            with self._db.engine.begin() as connection:
                connection.execute(
                    update(shares_table).where(shares_table.c.id == share_id).values(revoked_at=time.time())
                )
                bump(connection, SHARES)  # the other nodes reload their revocations
        if self._on_revoke is not None and not audited:
            self._on_revoke(share_id)

    def is_revoked(self, share_id: str) -> bool:
        return share_id in self._revoked
