"""Typed streams over real sockets: event data of every common type, parameters and bodies
validated by pydantic (every error of a request in one 400), and outgoing events checked
against what a stream declares."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import logging
import uuid
from typing import Annotated, Any, Literal

import pytest
import reactivex as rx
from aiohttp import web
from pydantic import BaseModel, Field, TypeAdapter
from typing_extensions import TypedDict  # (pydantic wants this one before Python 3.12)

import rxsse
from rxsse import EventSource, MessageEvent, controller, post, put, sse
from tests.conftest import FrameReader


class Side(enum.Enum):
    BUY = "buy"
    SELL = "sell"


class Price(BaseModel):
    symbol: str
    price: decimal.Decimal
    at: datetime.datetime


@dataclasses.dataclass
class Trade:
    id: uuid.UUID
    side: Side
    quantity: int
    day: datetime.date


class Quote(TypedDict):
    symbol: str
    bid: float
    ask: float


class Book(BaseModel):
    prices: list[Price]
    by_day: dict[str, datetime.date]
    tags: set[str] = set()


WHEN = datetime.datetime(2026, 11, 21, 9, 30, 15, 250000, tzinfo=datetime.UTC)
VALUES: dict[str, tuple[Any, Any]] = {
    "model": (Price, Price(symbol="ACME", price=decimal.Decimal("12.50"), at=WHEN)),
    "dataclass": (
        Trade,
        Trade(uuid.UUID(int=42), Side.SELL, 100, datetime.date(2026, 11, 20)),
    ),
    "typeddict": (Quote, Quote(symbol="ACME", bid=12.25, ask=12.75)),
    "datetime": (datetime.datetime, WHEN),
    "date": (datetime.date, datetime.date(2026, 2, 28)),
    "uuid": (uuid.UUID, uuid.UUID("12345678-1234-5678-1234-567812345678")),
    "decimal": (decimal.Decimal, decimal.Decimal("0.1")),
    "enum": (Side, Side.BUY),
    "containers": (
        Book,
        Book(
            prices=[Price(symbol="A", price=decimal.Decimal("1"), at=WHEN)],
            by_day={"monday": datetime.date(2026, 11, 16)},
            tags={"x"},
        ),
    ),
    "list-of-dataclasses": (
        list[Trade],
        [Trade(uuid.UUID(int=n), Side.BUY, n, datetime.date(2026, 1, n + 1)) for n in range(3)],
    ),
}


async def first_event(url: str) -> Any:
    async with EventSource(url) as events:
        async for event in events:
            return event
    raise AssertionError("no event")


@pytest.mark.parametrize("kind", sorted(VALUES))
async def test_event_data_of_every_common_type_round_trips(serve, kind):
    annotation, value = VALUES[kind]

    @sse("/value")
    def value_stream() -> rx.Observable[Any]:
        return rx.of(MessageEvent(value, id="1"))

    app = web.Application()
    rxsse.setup(app, value_stream, validate_events=True)
    server = await serve(app)
    event = await first_event(server.url("/value"))
    sent = json.loads(event.data)
    assert sent == TypeAdapter(annotation).dump_python(value, mode="json")
    assert TypeAdapter(annotation).validate_python(sent) == value  # read back: the same value


async def test_a_dataclass_in_the_readmes_embedding_example_is_sent(serve):
    @dataclasses.dataclass
    class Point:
        x: float
        y: float

    async def handler(request: web.Request) -> web.StreamResponse:
        return await rxsse.stream(request, rx.of(Point(1.5, 2.0)))

    app = web.Application()
    rxsse.setup(app)
    app.router.add_get("/points", handler)
    server = await serve(app)
    event = await first_event(server.url("/points"))
    assert (event.type, json.loads(event.data)) == ("message", {"x": 1.5, "y": 2.0})


# -- parameters and bodies ------------------------------------------------------------------------


class Window(BaseModel):
    """A group of query parameters."""

    start: datetime.datetime
    end: datetime.datetime | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 10
    sides: list[Side] = []


class Order(BaseModel):
    symbol: str = Field(min_length=1)
    quantity: Annotated[int, Field(gt=0)]
    limit: decimal.Decimal | None = None
    side: Side


@controller("/typed")
class Typed:
    @sse("/params/{account}")
    def params(
        self,
        account: uuid.UUID,
        since: datetime.datetime,
        day: datetime.date,
        side: Side,
        mode: Literal["live", "replay"],
        page: Annotated[int, Field(ge=1, le=100)],
        ids: list[int],
    ) -> rx.Observable[dict[str, Any]]:
        """Every kind of parameter, echoed."""
        values = {"account": account, "since": since, "day": day, "side": side, "mode": mode}
        values.update(page=page, ids=ids)
        return rx.of(TypeAdapter(dict[str, Any]).dump_python(values, mode="json"))

    @sse("/window")
    def window(self, window: Window) -> rx.Observable[Window]:
        """A model of query parameters."""
        return rx.of(window)

    @post("/orders")
    async def create(self, order: Order) -> dict[str, Any]:
        """A model as the JSON body."""
        return {"ordered": order.model_dump(mode="json")}

    @put("/trades/{trade_id}")
    async def replace(self, trade_id: uuid.UUID, body: Trade) -> dict[str, Any]:
        """A dataclass as the JSON body, by the name ``body``."""
        return {"id": str(trade_id), "quantity": body.quantity, "side": body.side.value}


@pytest.fixture
async def typed_client(serve) -> Any:
    app = web.Application()
    rxsse.setup(app, Typed(), options=rxsse.StreamOptions(heartbeat=None))
    server = await serve(app)
    return server


async def stream_data(client: Any, path: str) -> Any:
    async with client.get(path) as response:
        assert response.status == 200, await response.text()
        frame = await FrameReader(response).next()
        assert frame is not None
        return json.loads(frame.data or "null")


GOOD = "since=2026-11-21T10:00:00%2B01:00&day=2026-11-21&side=buy&mode=live&page=3&ids=1&ids=2"


async def test_parameters_of_any_type_pydantic_validates(typed_client):
    client = typed_client
    account = uuid.uuid4()
    data = await stream_data(client, f"/typed/params/{account}?{GOOD}")
    assert data == {
        "account": str(account),
        "since": "2026-11-21T10:00:00+01:00",
        "day": "2026-11-21",
        "side": "buy",
        "mode": "live",
        "page": 3,
        "ids": [1, 2],
    }


async def test_every_bad_parameter_is_listed_in_one_400(typed_client):
    query = "since=yesterday&day=2026-02-30&side=hold&mode=live&page=0&ids=1&ids=x"
    async with typed_client.get(f"/typed/params/not-a-uuid?{query}") as response:
        assert response.status == 400
        body = await response.json()
    found = {(e["location"], e["parameter"]) for e in body["errors"]}
    assert found == {
        ("path", "account"),
        ("query", "since"),
        ("query", "day"),
        ("query", "side"),
        ("query", "page"),
        ("query", "ids"),
    }
    assert all(e["message"] for e in body["errors"])
    assert body["parameter"] == "account" and "and 5 more" in body["error"]


async def test_a_missing_parameter_is_listed_with_the_invalid_ones(typed_client):
    async with typed_client.get(f"/typed/params/{uuid.uuid4()}?page=500") as response:
        body = await response.json()
    problems = {e["parameter"]: e["message"] for e in body["errors"]}
    assert set(problems) == {"since", "day", "side", "mode", "page", "ids"}
    assert "missing" in problems["since"]
    assert "less than or equal to 100" in problems["page"]


async def test_a_model_of_query_parameters(typed_client):
    client = typed_client
    data = await stream_data(
        client, "/typed/window?start=2026-11-21T00:00:00Z&limit=5&sides=buy&sides=sell"
    )
    assert data == {
        "start": "2026-11-21T00:00:00Z",
        "end": None,
        "limit": 5,
        "sides": ["buy", "sell"],
    }
    async with client.get("/typed/window?limit=500&sides=hold") as response:
        assert response.status == 400
        body = await response.json()
    assert {e["parameter"] for e in body["errors"]} == {"start", "limit", "sides.0"}


async def test_a_model_as_the_json_body(typed_client):
    client = typed_client
    order = {"symbol": "ACME", "quantity": 5, "limit": "12.5", "side": "buy"}
    async with client.post("/typed/orders", json=order) as response:
        assert response.status == 200
        assert await response.json() == {"ordered": order}
    bad = {"symbol": "", "quantity": -1, "limit": "cheap", "side": "hold"}
    async with client.post("/typed/orders", json=bad) as response:
        assert response.status == 400
        body = await response.json()
    assert {(e["location"], e["parameter"]) for e in body["errors"]} == {
        ("body", "symbol"),
        ("body", "quantity"),
        ("body", "limit"),
        ("body", "side"),
    }
    async with client.post("/typed/orders", data=b'{"quantity": NaN}') as response:
        body = await response.json()
    assert response.status == 400 and "not valid JSON" in body["error"]


async def test_a_dataclass_body_and_a_uuid_in_the_path(typed_client):
    client = typed_client
    trade_id = uuid.uuid4()
    trade = {"id": str(uuid.uuid4()), "side": "sell", "quantity": 7, "day": "2026-11-21"}
    async with client.request("PUT", f"/typed/trades/{trade_id}", json=trade) as response:
        assert await response.json() == {"id": str(trade_id), "quantity": 7, "side": "sell"}
    bad = {**trade, "quantity": "many"}
    async with client.request("PUT", "/typed/trades/nope", json=bad) as response:
        body = await response.json()
    assert {(e["location"], e["parameter"]) for e in body["errors"]} == {
        ("path", "trade_id"),
        ("body", "quantity"),
    }


def test_two_bodies_are_refused_at_setup():
    @post("/twice")
    async def twice(order: Order, body: Trade) -> None:
        return None

    with pytest.raises(TypeError, match="body twice"):
        rxsse.setup(web.Application(), twice)


# -- outgoing events checked against the declared types -----------------------------------------


class Update(BaseModel):
    symbol: str
    price: float


class Removed(BaseModel):
    symbol: str


def declared_app(source: rx.Observable[Any], *, validate: bool) -> web.Application:
    @sse("/prices")
    def prices() -> rx.Observable[MessageEvent[Update]]:
        return source

    @sse("/book", events={"update": Update, "removed": Removed})
    def book() -> rx.Observable[MessageEvent]:
        return source

    app = web.Application()
    rxsse.setup(
        app, prices, book, options=rxsse.StreamOptions(heartbeat=None), validate_events=validate
    )
    return app


async def read_all(client: Any, path: str) -> list[Any]:
    async with client.get(path) as response:
        return await FrameReader(response).rest()


async def test_an_event_that_is_not_what_the_stream_declares_fails_it(serve, caplog):
    caplog.set_level(logging.ERROR)
    source = rx.of(
        MessageEvent(Update(symbol="A", price=1.0), id="1"),
        MessageEvent({"symbol": "B", "price": "cheap"}, id="2"),
        MessageEvent(Update(symbol="C", price=3.0), id="3"),
    )
    server = await serve(declared_app(source, validate=True))
    frames = await read_all(server, "/prices")
    assert [f.get("id") for f in frames][:1] == ["1"]
    assert frames[-1].get("event") == "stream-error"
    assert len(frames) == 2  # the wrong event, and what came after it, never went out
    assert "GET /prices (declared_app.<locals>.prices)" in caplog.text
    assert "'message' event whose data is not Update" in caplog.text


async def test_an_undeclared_event_type_fails_the_stream(serve, caplog):
    caplog.set_level(logging.ERROR)
    source = rx.of(
        MessageEvent(Update(symbol="A", price=1.0), type="update"),
        MessageEvent(Removed(symbol="A"), type="removed"),
        MessageEvent({"symbol": "A"}, type="renamed"),
    )
    server = await serve(declared_app(source, validate=True))
    frames = await read_all(server, "/book")
    assert [f.get("event") for f in frames] == ["update", "removed", "stream-error"]
    assert "type 'renamed', which it does not declare" in caplog.text


async def test_a_strict_check_of_the_data_as_it_goes_on_the_wire(serve):
    good, wrong = {"symbol": "7", "price": 1.0}, {"symbol": 7, "price": 1.0}  # 7 is no str
    server = await serve(declared_app(rx.of(good, wrong), validate=True))
    frames = await read_all(server, "/prices")
    assert [f.get("event") for f in frames] == [None, "stream-error"]


async def test_without_validation_events_pass_as_they_are(serve):
    source = rx.of(MessageEvent({"symbol": "B", "price": "cheap"}))
    server = await serve(declared_app(source, validate=False))
    frames = await read_all(server, "/prices")
    assert [json.loads(f.data or "") for f in frames] == [{"symbol": "B", "price": "cheap"}]


def test_a_bad_event_type_is_refused_at_decoration():
    with pytest.raises(TypeError, match="CR or LF"):
        sse("/bad", events={"a\nb": Update})
