"""Admin sessions, recorded server-side so that logout really ends them.

The cookie is a plugin-signed token whose ``jti`` names a row of the ``sessions`` table.
A session is checked against the table once per node when its cookie is first seen (then
its identity is cached); after that, each request only asks :meth:`is_revoked`, a set
look-up. A logout bumps the shared "sessions" counter (store/versions.py): every node's
watcher then calls :meth:`reload`, within a poll; besides, the set is refreshed from the store
at most every ``refresh_seconds`` (on this node a logout takes effect at once).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable

from sqlalchemy import delete, insert, select, update

from ..store import Database
from ..store.schema import sessions as sessions_table
from ..store.versions import SESSIONS, bump

REFRESH_SECONDS = 5.0
LOCAL_GRACE_SECONDS = 60.0


class SessionRegistry:
    def __init__(self, db: Database, refresh_seconds: float = REFRESH_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._revoked: set[str] = set()  # ended sessions that have not expired yet
        self._local: dict[str, float] = {}  # ended on this node lately, by when
        self._refreshed_at = float("-inf")
        self._refresh()

    def open(self, user: str, ttl_seconds: int) -> str:
        """A new session of ``user``: its id (the ``jti`` of the cookie)."""
        session_id = secrets.token_urlsafe(24)
        now = self._clock()
        with self._db.engine.begin() as connection:
            # Expired rows go as new ones come: the table stays as small as the live sessions.
            connection.execute(delete(sessions_table).where(sessions_table.c.expires_at < now))
            connection.execute(insert(sessions_table).values(
                id=session_id, user=user, created_at=now, expires_at=now + ttl_seconds, revoked_at=None))
        return session_id

    def is_live(self, session_id: str) -> bool:
        """Whether the store knows this session, unexpired and not revoked (a store read)."""
        with self._db.engine.connect() as connection:
            row = connection.execute(
                select(sessions_table.c.expires_at, sessions_table.c.revoked_at)
                .where(sessions_table.c.id == session_id)
            ).first()
        return row is not None and row.revoked_at is None and row.expires_at > self._clock()

    def revoke(self, session_id: str) -> bool:
        """End a session; False when the store did not know it."""
        with self._lock:
            self._revoked.add(session_id)  # effective for the next request, before the write
            self._local[session_id] = self._clock()
        with self._db.engine.begin() as connection:
            result = connection.execute(
                update(sessions_table).where(sessions_table.c.id == session_id, sessions_table.c.revoked_at.is_(None))
                .values(revoked_at=self._clock())
            )
            bump(connection, SESSIONS)
        return bool(result.rowcount)

    def is_revoked(self, session_id: str) -> bool:
        """The per-request check: a set look-up, and a bounded store read every few seconds."""
        if self._clock() - self._refreshed_at >= self._refresh_seconds:
            self._refresh()
        return session_id in self._revoked

    def reload(self) -> None:
        """Read the sessions ended on any node (the "sessions" counter moved)."""
        self._refresh(force=True)

    def _refresh(self, force: bool = False) -> None:
        with self._lock:
            now = self._clock()
            if not force and now - self._refreshed_at < self._refresh_seconds:
                return  # another thread just did it
            self._refreshed_at = now
        with self._db.engine.connect() as connection:
            rows = connection.execute(
                select(sessions_table.c.id)
                .where(sessions_table.c.revoked_at.is_not(None), sessions_table.c.expires_at > now)
            ).all()
        revoked = {row.id for row in rows}
        with self._lock:
            # The store's set replaces the old one, so expired sessions leave memory. Sessions
            # ended here in the last minute stay: their write may not have committed before
            # this read.
            self._local = {sid: at for sid, at in self._local.items() if at > now - LOCAL_GRACE_SECONDS}
            self._revoked = revoked | set(self._local)
