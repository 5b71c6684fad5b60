"""Who may reach a route, before its handler runs: the gate's classification of requests.

Kept apart from the gate and the router so that both (and every ``api.py`` registering a
route next to its scope) import it without import cycles.
"""

from __future__ import annotations

from enum import StrEnum


class Scope(StrEnum):
    PUBLIC = "public"  # no authentication (health, login page)
    USER = "user"  # any authenticated caller; the handler checks the rest
    SEARCH = "search"  # QIDO across studies: answered filtered by the DICOMweb front
    STUDY = "study"  # touches exactly one study, which the caller must be allowed
    STOW = "stow"  # STOW-RS: roles listed in Gate.StowRoles
    ADMIN = "admin"
    CLOSED = "closed"  # nobody from outside (the DICOMweb plugin's internal root)
