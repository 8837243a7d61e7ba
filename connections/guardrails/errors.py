"""The outcomes a guardrail gives a check: stopped before sending (skipped), failed, or the session lost (error)."""


class GuardrailStop(Exception):
    """A guardrail stopped a query before it was sent; the check is `skipped` with this message.

    `reason` names the guardrail: budget, concurrency, cost, missing (the table is gone) or bookkeeping
    (Pulse's own database could not be reached to reserve queries).
    """

    def __init__(self, message: str, *, reason: str):
        super().__init__(message)
        self.reason = reason


class CheckError(Exception):
    """A query was sent and failed (timeout, error); the check is an `error` with this message."""


class SessionLost(CheckError):
    """The replica session broke; nothing more can run on it."""
