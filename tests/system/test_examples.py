"""Each example: the frames it sends, its 400s, and the script itself run as a process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from asyncio import subprocess
from datetime import datetime

import aiohttp
import pytest

from examples import custom_events, demo, notifications, progress, ticks
from rxsse import EventBus
from tests.conftest import FrameReader, free_port, start_server_process, wait_until


async def test_ticks_sends_count_and_timestamp(serve):
    client = await serve(ticks.create_app())
    async with client.get("/ticks?period=0.01") as resp:
        frames = await FrameReader(resp).take(3)
    data = [json.loads(f.data) for f in frames]
    assert [d["count"] for d in data] == [0, 1, 2]
    stamps = [datetime.fromisoformat(d["timestamp"]) for d in data]
    assert stamps == sorted(stamps)


async def test_ticks_rejects_a_bad_period(serve):
    client = await serve(ticks.create_app())
    for query in ("period=0", "period=soon"):
        async with client.get(f"/ticks?{query}") as resp:
            assert resp.status == 400
            assert (await resp.json())["parameter"] == "period"


async def test_custom_events_are_named_with_ids_and_retry_and_end_at_the_limit(serve):
    client = await serve(custom_events.create_app())
    async with client.get("/custom-events?tz=Asia/Kolkata&period=0.01&limit=3") as resp:
        frames = await FrameReader(resp).rest()
    assert [f.get("event") for f in frames] == ["UPDATE"] * 3
    assert [f.get("id") for f in frames] == ["0", "1", "2"]
    assert {f.get("retry") for f in frames} == {str(custom_events.RETRY_MS)}
    data = [json.loads(f.data) for f in frames]
    assert [d["count"] for d in data] == [0, 1, 2]
    assert all(d["dateTime"].endswith("+05:30") for d in data)


async def test_custom_events_resume_after_last_event_id(serve):
    client = await serve(custom_events.create_app())
    headers = {"Last-Event-ID": "1"}
    async with client.get("/custom-events?period=0.01&limit=4", headers=headers) as resp:
        frames = await FrameReader(resp).rest()
    assert [f.get("id") for f in frames] == ["2", "3"]


async def test_custom_events_answer_204_when_everything_was_sent(serve):
    client = await serve(custom_events.create_app())
    async with client.get("/custom-events?limit=3", headers={"Last-Event-ID": "2"}) as resp:
        assert resp.status == 204


@pytest.mark.parametrize(
    ("query", "headers", "parameter"),
    [
        ("tz=Mars/Olympus", {}, "tz"),
        ("tz=../../etc/passwd", {}, "tz"),
        ("tz=" + "A" * 4000, {}, "tz"),  # a name too long for the file system
        ("tz=" + "A/" * 300 + "A", {}, "tz"),
        ("tz=__pycache__", {}, "tz"),  # a directory of the tzdata package
        ("tz=%00", {}, "tz"),
        ("period=-1", {}, "period"),
        ("limit=0", {}, "limit"),
        ("limit=many", {}, "limit"),
        ("", {"Last-Event-ID": "abc"}, "last_event_id"),
        ("", {"Last-Event-ID": "-5"}, "last_event_id"),
    ],
)
async def test_custom_events_reject_bad_input_with_400(serve, query, headers, parameter):
    client = await serve(custom_events.create_app())
    async with client.get(f"/custom-events?{query}", headers=headers) as resp:
        assert resp.status == 400
        assert (await resp.json())["parameter"] == parameter


async def test_notifications_reach_only_their_own_email(serve):
    client = await serve(notifications.create_app())
    ann = await client.get("/notifications?email=ann@example.com")
    bob = await client.get("/notifications?email=Bob@Example.com")
    ann_reader, bob_reader = FrameReader(ann), FrameReader(bob)
    for email in ("ann@example.com", "bob@example.com", "ann@example.com"):
        async with client.post("/verify", json={"email": email}) as resp:
            assert resp.status == 200
    ann_frames = await ann_reader.take(2)
    bob_frames = await bob_reader.take(1)
    assert [json.loads(f.data)["email"] for f in ann_frames] == ["ann@example.com"] * 2
    assert json.loads(bob_frames[0].data) == {"email": "bob@example.com", "isVerified": True}
    # one more for bob: had ann's second event leaked to him, it would come before this one
    async with client.post("/verify", json={"email": "bob@example.com"}):
        pass
    assert json.loads((await bob_reader.next()).data)["email"] == "bob@example.com"
    ann.close()
    bob.close()


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        ({}, "email"),
        ({"email": 5}, "email"),
        ({"email": "no-at-sign"}, "email"),
        (["x"], "body"),
        ("text", "body"),
    ],
)
async def test_verify_rejects_a_bad_body_with_400(serve, body, parameter):
    client = await serve(notifications.create_app())
    async with client.post("/verify", json=body) as resp:
        assert resp.status == 400
        assert (await resp.json())["parameter"] == parameter  # (a body that is no object: body)


async def test_notifications_require_an_email(serve):
    client = await serve(notifications.create_app())
    async with client.get("/notifications") as resp:
        assert resp.status == 400
        assert (await resp.json())["parameter"] == "email"


async def test_progress_streams_0_to_100_then_completes_and_forgets_the_job(serve):
    controller = progress.Tasks(EventBus())
    client = await serve(progress.create_app(controller))
    async with client.post("/tasks?duration=0.2") as resp:
        assert resp.status == 202
        created = await resp.json()
    async with client.get(created["progress"]) as resp:
        frames = await FrameReader(resp).rest()
    data = [json.loads(f.data) for f in frames]
    assert {d["taskId"] for d in data} == {created["id"]}
    percents = [d["progress"] for d in data]
    assert percents == sorted(percents)
    assert percents[-1] == 100
    assert set(percents) <= set(range(0, 101, 10))
    await wait_until(lambda: controller.runner.jobs == {}, message="job forgotten")
    async with client.get(created["progress"]) as resp:
        assert resp.status == 404  # finished: a reconnecting browser stops here


async def test_progress_of_an_unknown_task_is_404_with_json(serve):
    client = await serve(progress.create_app())
    async with client.get("/tasks/nope/progress") as resp:
        assert resp.status == 404
        assert await resp.json() == {
            "error": "no such task (unknown or finished)",
            "task_id": "nope",
        }


async def test_progress_rejects_a_bad_duration(serve):
    client = await serve(progress.create_app())
    async with client.post("/tasks?duration=100000") as resp:
        assert resp.status == 400


async def test_progress_jobs_are_cancelled_on_shutdown(serve):
    controller = progress.Tasks(EventBus())
    client = await serve(progress.create_app(controller))
    async with client.post("/tasks?duration=600") as resp:
        assert resp.status == 202
    assert len(controller.runner.jobs) == 1
    await client.close()
    assert controller.runner.jobs == {}


async def test_demo_serves_the_page_and_every_stream(serve):
    client = await serve(demo.create_app())
    async with client.get("/") as resp:
        assert resp.status == 200
        page = await resp.text()
    for path in ("/ticks", "/custom-events", "/notifications", "/tasks", "new EventSource"):
        assert path in page
    async with client.get("/custom-events?period=0.01&limit=1") as resp:
        assert len(await FrameReader(resp).rest()) == 1


@pytest.mark.parametrize(
    ("module", "method", "path", "expect"),
    [
        ("ticks", "GET", "/ticks?period=0.05", "data: "),
        ("custom_events", "GET", "/custom-events?period=0.05&limit=2", "event: UPDATE"),
        ("notifications", "POST", "/verify", '"ok": true'),
        ("progress", "POST", "/tasks?duration=0.1", '"progress"'),
        ("demo", "GET", "/", "<title>rxsse demo</title>"),
    ],
)
async def test_example_runs_as_a_script(module, method, path, expect):
    port = free_port()
    process = await start_server_process(
        port,
        *("-m", f"examples.{module}", "--port", str(port)),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}{path}"
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, url, json={"email": "ann@example.com"}) as resp,
        ):
            text = (await asyncio.wait_for(resp.content.read(300), timeout=5)).decode()
        assert expect in text
    finally:
        process.send_signal(signal.SIGTERM)
        output = (await asyncio.wait_for(process.communicate(), timeout=10))[0].decode()
    assert process.returncode == 0, output
    assert "Traceback" not in output


async def test_progress_late_client_sees_every_step_and_can_resume(serve):
    client = await serve(progress.create_app())
    async with client.post("/tasks?duration=0.3") as resp:
        created = await resp.json()
    async with client.get(created["progress"]) as resp:
        reader = FrameReader(resp)
        first = await reader.take(3)
    # The first client left after three events; a browser resumes with its Last-Event-ID.
    headers = {"Last-Event-ID": first[-1].get("id")}
    async with client.get(created["progress"], headers=headers) as resp:
        rest = await FrameReader(resp).rest()
    percents = [json.loads(f.data)["progress"] for f in first + rest]
    assert percents == list(range(0, 101, 10))


async def test_notifications_resume_with_last_event_id(serve):
    client = await serve(notifications.create_app())
    stream = await client.get("/notifications?email=ann@example.com")
    reader = FrameReader(stream)
    async with client.post("/verify", json={"email": "ann@example.com"}) as resp:
        first_id = (await resp.json())["id"]
    assert (await reader.next()).get("id") == first_id
    stream.close()
    for email in ("bob@example.com", "ann@example.com"):
        async with client.post("/verify", json={"email": email}):
            pass
    headers = {"Last-Event-ID": first_id}
    async with client.get("/notifications?email=ann@example.com", headers=headers) as resp:
        missed = await FrameReader(resp).next()
    assert json.loads(missed.data) == {"email": "ann@example.com", "isVerified": True}
