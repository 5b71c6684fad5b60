"""Exceptions shared by the domain packages."""


class ConfigError(ValueError):
    """The plugin configuration is invalid; the gate must stay closed."""


class HttpError(Exception):
    """An error a REST handler answers with ``status`` and a JSON ``{"error": message}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class OrthancCallError(Exception):
    """An internal call to Orthanc's REST API failed (``status`` is the HTTP status)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message  # Orthanc's error name (orthanc.ErrorCode), e.g. "INEXISTENT_ITEM"
