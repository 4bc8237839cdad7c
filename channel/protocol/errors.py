"""The error tree, shared by server, client and CLI.

Every error a user can cause is one of these. The server renders them as RFC 9457 problem JSON
(``status`` + stable ``code``); the client maps ``code`` back to the same class; the CLI prints
``str(error)`` on one line and exits with ``exit_code``.

    ChannelError
    ├── BadRequest              400  bad_request
    │   ├── InvalidName         400  invalid_name
    │   ├── InvalidLetter       400  invalid_letter      (bad seal, digest or size: tampered)
    │   └── PayloadTooLarge     413  payload_too_large
    ├── Unauthenticated         401  unauthenticated     (bad, stale or missing request signature)
    │   └── Replayed            401  replayed            (a nonce seen before)
    ├── Forbidden               403  forbidden
    │   └── RegistrationClosed  403  registration_closed
    ├── NotFound                404  not_found
    │   ├── UnknownParty        404  unknown_party
    │   └── UnknownLetter       404  unknown_letter      (also: a letter that is not yours)
    ├── MethodNotAllowed        405  method_not_allowed
    ├── Conflict                409  conflict
    │   ├── NameTaken           409  name_taken
    │   ├── LetterIdConflict    409  letter_id_conflict
    │   └── InvalidTransition   409  invalid_transition  (already opened, returned, ...)
    │       └── LetterExpired   409  letter_expired
    ├── RateLimited             429  rate_limited        (too many requests; Retry-After says when)
    ├── StoreUnavailable        503  store_unavailable
    │   └── Overloaded          503  overloaded          (the courier is at its bound of requests)
    ├── Misconfigured           500  misconfigured       (the courier refuses to start)
    └── (client side only, never sent by the server)
        ├── ServerUnreachable        server_unreachable
        ├── KeyringError             keyring
        └── IntegrityError           integrity           (a signature, digest or chain fails)
"""

from __future__ import annotations

from typing import Any, ClassVar


class ChannelError(Exception):
    """Base of every Backchannel error; never raised itself."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"
    title: ClassVar[str] = "Internal error"
    exit_code: ClassVar[int] = 1

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        self.detail = detail or self.title
        self.extra = extra
        super().__init__(self.detail)

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        """The RFC 9457 problem object for this error."""
        problem: dict[str, Any] = {
            "type": f"urn:backchannel:problem:{self.code}",
            "title": self.title,
            "status": self.status,
            "code": self.code,
            "detail": self.detail,
        }
        if instance:
            problem["instance"] = instance
        problem.update(self.extra)
        return problem


class BadRequest(ChannelError):
    """The request is malformed: not JSON, wrong fields, wrong types."""

    status, code, title, exit_code = 400, "bad_request", "Bad request", 2


class InvalidName(BadRequest):
    """A party name or letter id does not follow the naming rule."""

    code, title = "invalid_name", "Invalid name"


class InvalidLetter(BadRequest):
    """A sealed letter fails its checks: bad seal, digest, size or envelope (tampered or forged)."""

    code, title = "invalid_letter", "Invalid letter"


class PayloadTooLarge(BadRequest):
    """The request body is larger than the courier accepts."""

    status, code, title = 413, "payload_too_large", "Payload too large"


class Unauthenticated(ChannelError):
    """The request signature is missing, malformed, outside the time window or does not verify."""

    status, code, title, exit_code = 401, "unauthenticated", "Unauthenticated", 3


class Replayed(Unauthenticated):
    """The request's nonce was seen before: a replayed request."""

    code, title = "replayed", "Replayed request"


class Forbidden(ChannelError):
    """The caller is known but may not do this."""

    status, code, title, exit_code = 403, "forbidden", "Forbidden", 3


class RegistrationClosed(Forbidden):
    """Registration needs a valid one-time invitation (or a pinned key, or an open courier)."""

    code, title = "registration_closed", "Registration closed"


class NotFound(ChannelError):
    status, code, title, exit_code = 404, "not_found", "Not found", 4


class UnknownParty(NotFound):
    """No party of that name is registered with the courier."""

    code, title = "unknown_party", "Unknown party"


class UnknownLetter(NotFound):
    """No such letter for this caller. A letter that is not yours is indistinguishable from none."""

    code, title = "unknown_letter", "Unknown letter"


class MethodNotAllowed(ChannelError):
    """The path exists but not with this HTTP method."""

    status, code, title, exit_code = 405, "method_not_allowed", "Method not allowed", 2


class Conflict(ChannelError):
    status, code, title, exit_code = 409, "conflict", "Conflict", 5


class NameTaken(Conflict):
    """The party name is registered with other keys; names are never taken over."""

    code, title = "name_taken", "Name taken"


class LetterIdConflict(Conflict):
    """A different letter was already sent under this letter id."""

    code, title = "letter_id_conflict", "Letter id conflict"


class InvalidTransition(Conflict):
    """The letter's state does not allow this step (e.g. returning a letter already opened)."""

    code, title = "invalid_transition", "Invalid transition"


class LetterExpired(InvalidTransition):
    """The letter passed its deadline and went back to its sender."""

    code, title = "letter_expired", "Letter expired"


class RateLimited(ChannelError):
    """The party sent more requests than its rate limit allows; Retry-After says when to retry."""

    status, code, title, exit_code = 429, "rate_limited", "Too many requests", 6

    def __init__(self, detail: str | None = None, *, retry_after_ms: int = 1000) -> None:
        super().__init__(detail, retry_after_ms=retry_after_ms)
        self.retry_after_ms = retry_after_ms

    @property
    def retry_after(self) -> int:
        """Whole seconds to wait, rounded up (the Retry-After header)."""
        return max(1, -(-self.retry_after_ms // 1000))


class TooManyStreams(RateLimited):
    """The party (or the courier as a whole) holds as many live event streams as it may."""

    code, title = "too_many_streams", "Too many event streams"


class StoreUnavailable(ChannelError):
    """The courier cannot reach its Redis store."""

    status, code, title, exit_code = 503, "store_unavailable", "Store unavailable", 6


class Overloaded(StoreUnavailable):
    """The courier is at its bound of requests in flight and no slot came free in time.

    A kind of unavailability: clients back off and retry it as they do the store's."""

    code, title = "overloaded", "Courier overloaded"


class Misconfigured(ChannelError):
    """The courier cannot start safely: e.g. its key differs from the one its store was
    started with, so its receipts would not verify against the key parties have pinned."""

    status, code, title, exit_code = 500, "misconfigured", "Courier misconfigured", 9


class ServerUnreachable(ChannelError):
    """The client cannot reach the courier."""

    status, code, title, exit_code = 0, "server_unreachable", "Server unreachable", 6


class KeyringError(ChannelError):
    """The local keyring lacks a party, cannot be read, or the passphrase is wrong."""

    status, code, title, exit_code = 0, "keyring", "Keyring error", 7


class IntegrityError(ChannelError):
    """A signature, digest or receipt chain fails to verify: something was altered."""

    status, code, title, exit_code = 0, "integrity", "Integrity check failed", 8


def _all_subclasses(cls: type[ChannelError]) -> list[type[ChannelError]]:
    found: list[type[ChannelError]] = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found


ERRORS_BY_CODE: dict[str, type[ChannelError]] = {
    cls.code: cls for cls in _all_subclasses(ChannelError)
}


def error_from_problem(status: int, problem: dict[str, Any]) -> ChannelError:
    """Rebuild the typed error a server problem stands for (the client's half of the mapping)."""
    cls = ERRORS_BY_CODE.get(str(problem.get("code")))
    if cls is None:
        cls = _fallback_for_status(status)
    return cls(str(problem.get("detail") or problem.get("title") or f"HTTP {status}"))


def _fallback_for_status(status: int) -> type[ChannelError]:
    for cls in (
        BadRequest,
        Unauthenticated,
        Forbidden,
        NotFound,
        Conflict,
        RateLimited,
        StoreUnavailable,
    ):
        if cls.status == status:
            return cls
    return BadRequest if 400 <= status < 500 else ChannelError
