"""The plugin's own state (grants, shares, audit, jobs): one database, two back ends.

SQLite in the data folder by default; PostgreSQL by URL when several Orthanc nodes share
one index. Only SQLAlchemy Core is used, so the same statements run on both.
"""

from .database import Database, open_database

__all__ = ["Database", "open_database"]
