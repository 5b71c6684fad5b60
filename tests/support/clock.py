"""A clock that moves only when a test moves it (``clock.now += 1``), for code taking ``clock=``."""


class ManualClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
