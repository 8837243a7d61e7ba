"""The outcomes a guardrail gives a check: stopped before sending (skipped), failed, or the session lost (error)."""


class GuardrailStop(Exception):
    """A guardrail stopped a query before it was sent; the check is `skipped` with this message.

    `reason` names the guardrail: budget, time_share, concurrency, cost, missing (the table is gone) or
    bookkeeping (Pulse's own database could not be reached to reserve queries or replica time).
    """

    def __init__(self, message: str, *, reason: str, retry_at=None):
        super().__init__(message)
        self.reason = reason
        self.retry_at = retry_at  # when the held-back work may run (the time share says), if known


class CheckError(Exception):
    """A query was sent and failed (timeout, error); the check is an `error` with this message."""


class SessionLost(CheckError):
    """The replica session broke; nothing more can run on it."""
