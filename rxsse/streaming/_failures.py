"""How a stream that fails after it started ends, so that its clients do not reconnect into the
same failure for ever.

The failure is sent as one event of type ``error_event`` (``"stream-error"`` by default: a
browser's ``EventSource`` hands an event of type ``error`` to ``onerror``, the handler of lost
connections), then the response ends. Its id marks the failure: ``rxsse-failed:<n>:<last id>``,
``n`` failures in a row, ``last id`` the last real event id the client had. A client that
reconnects sends that mark back as ``Last-Event-ID``:

- rxsse takes the mark off, so the handler's ``last_event_id`` is the last real id and the
  stream resumes where it was (:func:`last_event_id` does the same in a handler of your own);
- each failure in a row doubles the ``retry:`` the failure event asks for (from
  ``error_retry`` seconds, up to a minute), so clients back off;
- after ``max_failures`` in a row, the reconnect is answered ``204 No Content``, which makes a
  browser's ``EventSource`` (and rxsse's client) stop.

The count starts again only when a stream made progress: it sent an event whose id is past the
``Last-Event-ID`` it started from. A stream that fails the same way each time, sending the same
ids again before it fails, is failing in a row, and backs off to its 204.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from .._checks import check_count, is_number
from .._event import MessageEvent

logger = logging.getLogger("rxsse.stream")

#: The event type of a failure after the stream started.
DEFAULT_ERROR_EVENT: Final = "stream-error"
#: Seconds before the first reconnect after a failure (doubled for each failure in a row).
DEFAULT_ERROR_RETRY: Final = 2.0
#: Failures in a row after which a reconnect is answered 204.
DEFAULT_MAX_FAILURES: Final = 6
_MARK: Final = "rxsse-failed:"
# An id that begins with a sequence number: "41", "41-9f3a" (the bus's), "41:..."
_SEQUENCE: Final = re.compile(r"([0-9]{1,19})(?![0-9])")
_MAX_RETRY_MS: Final = 60_000


@dataclass(frozen=True, slots=True)
class FailurePolicy:
    """How a failed stream ends (the keywords of :func:`rxsse.stream`, checked once).

    Attributes:
        error_event: the event type that reports the failure.
        error_retry: seconds the client waits before its first reconnect after a failure;
            doubled for each failure in a row, up to a minute.
        max_failures: failures in a row after which a reconnect is answered 204 (None: never).
    """

    error_event: str = DEFAULT_ERROR_EVENT
    error_retry: float = DEFAULT_ERROR_RETRY
    max_failures: int | None = DEFAULT_MAX_FAILURES

    def __post_init__(self) -> None:
        MessageEvent(type=self.error_event)  # the checks of an event type
        if self.error_event in ("", "error", "message"):
            raise ValueError(
                f"error_event {self.error_event!r} would reach the browser's onerror or "
                "onmessage: choose a type of its own"
            )
        retry = self.error_retry
        if not is_number(retry) or not 0 <= retry <= 60:
            raise ValueError(f"error_retry must be a number of seconds in [0, 60], not {retry!r}")
        check_count("max_failures", self.max_failures, optional=True)

    def gave_up(self, resume: Resume) -> bool:
        """Whether this reconnect comes after ``max_failures`` failures in a row."""
        return self.max_failures is not None and resume.failures >= self.max_failures


@dataclass(frozen=True, slots=True)
class Resume:
    """Where a reconnecting client stands: its last real event id, and how many times in a row
    its stream failed before."""

    last_event_id: str | None
    failures: int = 0


def resume_of(request: web.BaseRequest) -> Resume:
    """The resume point a request carries (``Last-Event-ID``, else the ``lastEventId`` query
    parameter), with a failure mark taken off and counted."""
    raw = request.headers.get("Last-Event-ID")
    if raw is None:
        raw = request.query.get("lastEventId")
    if raw is None or not raw.startswith(_MARK):
        return Resume(raw)
    count, colon, last = raw[len(_MARK) :].partition(":")
    if not colon or not count.isascii() or not count.isdigit() or len(count) > 6:
        return Resume(raw)  # not a mark of ours after all: an id like any other
    return Resume(last or None, int(count))


def last_event_id(request: web.BaseRequest) -> str | None:
    """The id a reconnecting client last received (``Last-Event-ID``, else the
    ``lastEventId`` query parameter), without the mark a failed stream puts on it.

    Use it in a handler that calls :func:`rxsse.stream` itself; ``@sse`` handlers get it as
    their ``last_event_id`` parameter.

    Example:
        >>> bus.on("orders.*", last_event_id=rxsse.last_event_id(request))  # doctest: +SKIP
    """
    return resume_of(request).last_event_id


def failure_event(
    error: BaseException | None,
    request: web.Request,
    policy: FailurePolicy,
    resume: Resume,
    sent_id: str | None,
) -> MessageEvent:
    """The last event of a stream that failed after it started: no internals, a status, the
    failure mark as its id, and the backed-off reconnection time. ``sent_id`` is the last
    event id this response carried: if it is past the one the client started from (see
    :func:`made_progress`), the client moved on, and the count of failures in a row starts
    again."""
    if isinstance(error, web.HTTPException):
        status, message = error.status, error.reason
    else:
        logger.error("event stream %s failed", request.path, exc_info=error)
        status, message = 500, "internal server error"
    before = 0 if made_progress(resume.last_event_id, sent_id) else resume.failures
    last_id = sent_id if sent_id is not None else resume.last_event_id
    failures = before + 1
    retry = min(round(policy.error_retry * 1000 * 2 ** min(before, 16)), _MAX_RETRY_MS)
    data = json.dumps({"status": status, "message": message, "failures": failures})
    try:
        return MessageEvent(
            data, id=f"{_MARK}{failures}:{last_id or ''}", type=policy.error_event, retry=retry
        )
    except ValueError:  # a resume point a client made up, which no id may carry
        return MessageEvent(data, id=f"{_MARK}{failures}:", type=policy.error_event, retry=retry)


def made_progress(started_from: str | None, sent_id: str | None) -> bool:
    """Whether a response that started from the id ``started_from`` and whose last event id
    was ``sent_id`` moved its client on: it sent an id, another than the one it started
    from and, where both begin with a sequence number (``"41"``, the bus's ``"41-9f3a"``), a
    later one.

    Example:
        >>> made_progress("1", "1"), made_progress("7-a", "3-a"), made_progress("7-a", "8-a")
        (False, False, True)
    """
    if sent_id is None or sent_id == started_from:
        return False
    if started_from is None:
        return True
    before, after = _SEQUENCE.match(started_from), _SEQUENCE.match(sent_id)
    if before is None or after is None:
        return True  # ids of the application's own kind: a new one is progress
    return int(after[1]) > int(before[1])


def failure_frame(
    error: BaseException | None,
    request: web.Request,
    policy: FailurePolicy,
    last_id: str | None,
) -> bytes:
    """The frame that ends a stream that failed after it started (see :func:`failure_event`)."""
    return failure_event(error, request, policy, resume_of(request), last_id).encode()
