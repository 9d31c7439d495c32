"""The wire format: :class:`MessageEvent` and its encoding to ``text/event-stream`` bytes.

This module is the only writer of SSE syntax in rxsse. Every rule that keeps user data from
forging fields or events lives here:

- ``data`` that is a ``str`` is split on CRLF, CR and LF into one ``data:`` line per line;
  any other value is serialised as compact JSON (which never contains a raw line break);
- ``id`` and ``type`` may not contain CR or LF (``id`` not NUL either): they are rejected with
  :class:`ValueError` when the event is built, never rewritten into a different field;
- ``retry`` is a non-negative number of milliseconds;
- ``comment`` lines start with ``:`` and are ignored by clients.
"""

from __future__ import annotations

from typing import Any, Generic, cast

from typing_extensions import TypeVar

from . import _payload as payload


def _split_lines(text: str) -> list[str]:
    """Split on every line terminator the SSE parser recognises (CRLF, CR, LF)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.split("\n")


def comment_line(text: str) -> bytes:
    """``text`` as comment lines (``: text``) with no blank line after them.

    Every client reads them as nothing: with no blank line there is no event to dispatch,
    even for a client that dispatches an empty one once it has seen an id (httpx-sse does).
    A comment line between two frames keeps a connection (and the proxies on its way) busy:
    servers use them as heartbeats.

    Example:
        >>> comment_line("ping")
        b': ping\\n'
    """
    return "".join(f": {line}\n" for line in _split_lines(text)).encode()


#: What an event's data is: ``MessageEvent[Price]`` declares it (unsaid, it is ``Any``).
DataT = TypeVar("DataT", default=Any)


class MessageEvent(Generic[DataT]):
    """One server-sent event, immutable, with its encoded bytes cached.

    ``MessageEvent[Price]`` is an event whose data is a ``Price``: a handler annotated
    ``-> rx.Observable[MessageEvent[Price]]`` declares what its stream carries (see the
    docs' Streams page, "Typed streams").

    Args:
        data: the payload. A ``str`` is sent as is (split into lines); ``None`` sends no
            ``data`` field; anything else is sent as compact JSON.
        id: the event id (``str`` or ``int``), which the browser echoes back as
            ``Last-Event-ID`` when it reconnects. May not contain CR, LF or NUL.
        type: the event type (the wire field ``event``); browsers deliver typed events only
            to ``addEventListener(type, ...)``, not to ``onmessage``. May not contain CR or LF.
        retry: the client's reconnection delay in milliseconds (a non-negative ``int``).
        comment: a comment sent before the fields, ignored by clients.
        event: another name for ``type``, as the field is called on the wire.

    Raises:
        ValueError: for an ``id`` or ``type`` that would break the frame, an ``id``, ``type``
            or ``comment`` that is not valid Unicode, a negative or non-integer ``retry``, or
            both ``type`` and ``event`` given. (``data`` is checked when first encoded; the
            event bus checks it when it is emitted.)

    Example:
        >>> MessageEvent({"count": 1}, id=1, type="tick").encode()
        b'id: 1\\nevent: tick\\ndata: {"count":1}\\n\\n'
    """

    # Private slots behind read-only properties: plain stores when an event is made (five
    # times cheaper than object.__setattr__ past an immutable __setattr__), and no setter.
    __slots__ = ("_comment", "_data", "_encoded", "_id", "_json", "_retry", "_type")

    _data: DataT
    _id: str | None
    _type: str | None
    _retry: int | None
    _comment: str | None
    _encoded: bytes | None
    _json: str | None  # data's JSON text, when it is known already (an event off the bus)

    def __init__(
        self,
        data: DataT = None,  # type: ignore[assignment]  # (no data: an id, a retry, a comment)
        *,
        id: str | int | None = None,
        type: str | None = None,
        retry: int | None = None,
        comment: str | None = None,
        event: str | None = None,
    ) -> None:
        if event is not None:
            if type is not None and type != event:
                raise ValueError("give the event type once: 'type' or 'event', not both")
            type = event
        self._data = data
        # The checks run only for the fields given: a data-only event pays for none of them.
        self._id = None if id is None else _check_id(id)
        self._type = None if type is None else _check_type(type)
        self._retry = None if retry is None else _check_retry(retry)
        self._comment = None if comment is None else _check_comment(comment)
        self._encoded = None
        self._json = None

    @property
    def data(self) -> DataT:
        """The payload."""
        return self._data

    @property
    def id(self) -> str | None:
        """The event id (a str), or None."""
        return self._id

    @property
    def type(self) -> str | None:
        """The event type (the wire field ``event``), or None."""
        return self._type

    @property
    def retry(self) -> int | None:
        """The reconnection delay in milliseconds, or None."""
        return self._retry

    @property
    def comment(self) -> str | None:
        """The comment sent before the fields, or None."""
        return self._comment

    @classmethod
    def from_json(
        cls, text: str, *, id: str | int | None = None, type: str | None = None
    ) -> MessageEvent[Any]:
        """The event whose ``data`` is the JSON ``text`` parsed; its frame carries ``text`` as
        it is, so data that was encoded once (when it was emitted) is not encoded again.

        Raises:
            ValueError: for text that is not JSON rxsse reads, or a bad id or type.

        Example:
            >>> MessageEvent.from_json('{"n":1}', id="7-a").encode()
            b'id: 7-a\\ndata: {"n":1}\\n\\n'
        """
        data = payload.loads(text)
        event: MessageEvent[Any] = cls(data, id=id, type=type)
        if data is not None and not isinstance(data, str) and "\n" not in text and "\r" not in text:
            event._json = text
        return event

    def encode(self) -> bytes:
        """Return the event as one complete ``text/event-stream`` frame (cached).

        Raises:
            ValueError: when ``data`` is not ``str`` and cannot be sent as JSON (an
                unserialisable object, NaN or infinity, a lone surrogate), or is text that is
                not valid Unicode.
        """
        encoded: bytes | None = self._encoded
        if encoded is None:
            encoded = self._encode()
            self._encoded = encoded
        return encoded

    def _encode(self) -> bytes:
        # (JSON text already known is that of data that is neither None nor a str: the data
        # itself is not read, so an event off the in-memory bus is never parsed to be sent.)
        known = self._json
        data = self._data if known is None else None
        is_json = known is not None or (data is not None and not isinstance(data, str))
        if (
            self._id is None
            and self._type is None
            and self._retry is None
            and self._comment is None
            and is_json
        ):  # the common case, a JSON payload alone: one join
            return b"data: " + self._json_bytes(data) + b"\n\n"
        parts: list[str] = []
        if self._comment is not None:
            parts.extend(f": {line}\n" for line in _split_lines(self._comment))
        if self._id is not None:
            parts.append(f"id: {self._id}\n")
        if self._type is not None:
            parts.append(f"event: {self._type}\n")
        if self._retry is not None:
            parts.append(f"retry: {self._retry}\n")
        if is_json:
            return b"".join(("".join(parts).encode(), b"data: ", self._json_bytes(data), b"\n\n"))
        if isinstance(data, str):
            parts.extend(f"data: {line}\n" for line in _split_lines(data))
        parts.append("\n")
        return "".join(parts).encode()

    def _json_bytes(self, data: object) -> bytes:
        known = self._json
        return known.encode() if known is not None else payload.dumps_bytes(data)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MessageEvent):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # data may be a dict

    def __repr__(self) -> str:
        names = ("data", "id", "type", "retry", "comment")
        shown = ", ".join(
            f"{name}={value!r}"
            for name, value in zip(names, self._fields(), strict=True)
            if value is not None
        )
        return f"MessageEvent({shown})"

    def _fields(self) -> tuple[Any, str | None, str | None, int | None, str | None]:
        return (self.data, self.id, self.type, self.retry, self.comment)


_UNREAD: Any = object()


def event_of(value: Any) -> MessageEvent[Any]:
    """An emission as the event it is sent as: a :class:`MessageEvent` as it is, any other
    value as an event's data."""
    return value if isinstance(value, MessageEvent) else MessageEvent(value)


class _JsonText(MessageEvent[Any]):
    """An event made from JSON text rxsse encoded itself (the in-memory bus): its data is
    parsed when first read, so a fan-out that only sends its frame never parses it."""

    __slots__ = ()

    @property
    def data(self) -> Any:
        """The payload (parsed from the event's JSON text when first read)."""
        value = self._data
        if value is _UNREAD:
            value = self._data = payload.loads(cast(str, self._json))
        return value


def own_json_event(text: str, *, id: str, type: str | None) -> MessageEvent[Any]:
    """The event of JSON ``text`` that :func:`rxsse._payload.dumps` made, with an ``id`` and a
    ``type`` that were checked already: as :meth:`MessageEvent.from_json` makes it, but its
    data is parsed only when read."""
    if text[:1] not in ("{", "["):  # (a str, null or a number: parsed now, as ever)
        return MessageEvent.from_json(text, id=id, type=type)
    event = _JsonText(_UNREAD)
    event._id, event._type, event._json = id, type, text
    return event


# The checks below run only for fields that were given (not None).


def _check_id(value: str | int) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"id must be a str or an int, not {value.__class__.__name__}")
    text = str(value)
    if "\n" in text or "\r" in text or "\0" in text:
        raise ValueError(f"id may not contain CR, LF or NUL: {text!r}")
    return _check_unicode(text, "id")


def _check_type(value: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"type must be a str, not {value.__class__.__name__}")
    if "\n" in value or "\r" in value:
        raise ValueError(f"type may not contain CR or LF: {value!r}")
    return _check_unicode(value, "type")


def _check_retry(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"retry must be an int of milliseconds, not {value!r}")
    if value < 0:
        raise ValueError(f"retry must be non-negative, not {value}")
    return value


def _check_comment(value: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"comment must be a str, not {value.__class__.__name__}")
    return _check_unicode(value, "comment")


def _check_unicode(text: str, field: str) -> str:
    """Refuse text that UTF-8 cannot carry (lone surrogates) when the event is built, rather
    than when it is first sent."""
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            raise ValueError(f"{field} is not valid Unicode (a lone surrogate): {text!r}") from None
    return text
