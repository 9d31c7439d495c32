"""The incremental ``text/event-stream`` parser, following the WHATWG HTML interpretation rules.

The only reader of SSE syntax in rxsse: bytes in, :class:`MessageEvent` out, in chunks of any
size (a CRLF or a UTF-8 sequence may be split across two chunks).
"""

from __future__ import annotations

import codecs
import re
from typing import Final

from ._event import MessageEvent

_LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")


class Parser:
    """Parse one event stream (or several successive ones, as a reconnecting client sees them).

    - The UTF-8 byte order mark at the start of a stream is dropped; invalid UTF-8 decodes to
      U+FFFD.
    - Lines end in CRLF, LF or CR; ``:`` starts a comment; a field's value loses one leading
      space; a line without a colon is a field with an empty value; unknown fields are ignored.
    - ``id`` with a NUL is ignored; the last event id persists across events (and streams);
      ``retry`` counts only if it is all ASCII digits.
    - A blank line dispatches the event (its id is the last event id at that moment, its type
      ``"message"`` unless an ``event`` field said otherwise); nothing is dispatched when no
      ``data`` field came.

    Args:
        comments: also report each comment line, in stream order, the moment it is read, as
            ``MessageEvent(comment=text)`` (no data, id or type; ``text`` without the colon and
            one leading space, so ``: ping`` is ``"ping"``). A comment neither dispatches nor
            interrupts the event around it. Off by default: comments then cost nothing.

    Attributes:
        last_event_id: the last event id (``""`` when none), as a browser's ``lastEventId``.
        retry: the reconnection time the server asked for, in milliseconds, or None.

    Example:
        >>> parser = Parser()
        >>> parser.feed(b"id: 7\\nevent: tick\\ndata: {\\"n\\": 1}\\n\\n")
        [MessageEvent(data='{"n": 1}', id='7', type='tick')]
    """

    __slots__ = (
        "_data",
        "_decoder",
        "_id",
        "_out",
        "_pending",
        "_report_comments",
        "_skip_lf",
        "_type",
        "last_event_id",
        "retry",
    )

    def __init__(self, *, comments: bool = False) -> None:
        self._report_comments = comments
        self._out: list[MessageEvent] = []  # the events of the chunk being fed
        self.last_event_id = ""
        self.retry: int | None = None
        self._new_stream()

    def _new_stream(self) -> None:
        # utf-8-sig drops one BOM at the start of the stream, and only there.
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")("replace")
        self._pending = ""  # the start of a line whose end has not arrived
        self._skip_lf = False  # the last chunk ended in CR: a leading LF completes a CRLF
        self._data: list[str] = []
        self._type = ""
        self._id = self.last_event_id

    def feed(self, chunk: bytes) -> list[MessageEvent]:
        """Parse the next bytes of the stream; return the events they complete."""
        text = self._decoder.decode(chunk)
        if not text:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if text[0] == "\n":
                text = text[1:]
        text = self._pending + text
        lines = _LINE_BREAK.split(text) if "\r" in text else text.split("\n")
        self._pending = lines.pop()
        if text.endswith("\r"):
            self._skip_lf = True
        events: list[MessageEvent] = []
        self._out = events  # (where a comment line goes, in order, when they are reported)
        for line in lines:
            if line:
                self._field(line)
            else:
                event = self._dispatch()
                if event is not None:
                    events.append(event)
        return events

    def finish(self) -> None:
        """The stream ended: drop the unfinished event (and an id it set but did not commit),
        keep ``last_event_id`` and ``retry``, and get ready for the next stream."""
        self._new_stream()

    def _field(self, line: str) -> None:
        name, colon, value = line.partition(":")
        if not name and colon:
            if self._report_comments:  # (only comment lines pay for this test)
                self._out.append(MessageEvent(comment=value[1:] if value[:1] == " " else value))
            return  # a comment
        if value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._type = value
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value and value.isascii() and value.isdigit():
            self.retry = int(value)

    def _dispatch(self) -> MessageEvent | None:
        self.last_event_id = self._id
        data, event_type = self._data, self._type
        self._data, self._type = [], ""
        if not data:
            return None
        return MessageEvent("\n".join(data), id=self.last_event_id, type=event_type or "message")
