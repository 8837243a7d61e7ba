"""Guardrails that bound Pulse's load on a replica, kept in Pulse's database so they hold across processes.

One module per guardrail:
- `budget`: at most `max_queries_per_hour` queries per connection per clock hour, spaced by the rate
  (`1 / max_queries_per_second` seconds apart) on a schedule shared by every process.
- `share`: the replica time share: Pulse's statements' durations on a replica, at most
  `replica_time_share_percent` of one backend (with a burst), on a bucket shared by every process.
- `slots`: at most `max_concurrent_queries` sessions per replica (advisory locks in Pulse's database).
- `sessions`: a batch's slot and session (`Checkout`); the daemon's `SessionKeeper` keeps warm sessions, each
  in its slot, between batches.
- `runner`: `QueryRunner` sends the queries of a session: statement and lock timeouts backed by a client-side
  deadline, recovery conflicts retried (each try counts), the cost guard, user SQL fetched bounded.
- `lookup`: the one-off session of save-time lookups (API and admin), under the same budget, rate and slots.
- `errors`: what a guardrail makes of a check: `GuardrailStop` (skipped), `CheckError`, `SessionLost` (error).

The circuit breaker (leave a failing connection alone for a while) is connection state: `connections.state`.
"""

from connections.guardrails.budget import Allowance, allowance_refund, allowance_reserve, query_caps_bind
from connections.guardrails.errors import CheckError, GuardrailStop, SessionLost
from connections.guardrails.lookup import lookup_session
from connections.guardrails.runner import (
    CANCEL_WAIT_SECONDS,
    CLIENT_DEADLINE_GRACE_SECONDS,
    RECOVERY_CONFLICT_BACKOFF_SECONDS,
    RECOVERY_CONFLICT_RETRIES,
    USER_ROW_MAX_BYTES,
    USER_ROWS,
    Deadline,
    QueryRunner,
    UserRows,
    known_cost,
    session_limits,
    statement_deadline,
)
from connections.guardrails.sessions import Checkout, SessionKeeper, one_off_checkout
from connections.guardrails.share import SHARE_WAIT_MAX_SECONDS, ShareUse, TimeShare, share_use, time_share_charge
from connections.guardrails.slots import SLOT_LOCK_NAMESPACE, replica_slot

__all__ = [
    "CANCEL_WAIT_SECONDS",
    "CLIENT_DEADLINE_GRACE_SECONDS",
    "RECOVERY_CONFLICT_BACKOFF_SECONDS",
    "RECOVERY_CONFLICT_RETRIES",
    "SHARE_WAIT_MAX_SECONDS",
    "SLOT_LOCK_NAMESPACE",
    "USER_ROWS",
    "USER_ROW_MAX_BYTES",
    "Allowance",
    "CheckError",
    "Checkout",
    "Deadline",
    "GuardrailStop",
    "QueryRunner",
    "SessionKeeper",
    "SessionLost",
    "ShareUse",
    "TimeShare",
    "UserRows",
    "allowance_refund",
    "allowance_reserve",
    "known_cost",
    "lookup_session",
    "one_off_checkout",
    "query_caps_bind",
    "replica_slot",
    "session_limits",
    "share_use",
    "statement_deadline",
    "time_share_charge",
]
