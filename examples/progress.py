"""Progress of long-running jobs on the event bus: ``POST /tasks`` starts one and returns its
id; ``GET /tasks/{task_id}/progress`` streams 0..100 and completes when the job is done.

Jobs publish on the topic ``tasks.progress``. A stream starts with the job's first event and
replays the rest from the bus's log, so a client that connects late still sees every step, and a
browser that reconnects resumes from its ``Last-Event-ID``. When the job ends it is forgotten: a
finished or unknown id is a 404 (which also stops a reconnecting browser).

Run it: ``python -m examples.progress``, then
``curl -X POST 'http://127.0.0.1:8080/tasks?duration=5'`` and
``curl -N http://127.0.0.1:8080/tasks/<id>/progress``.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Annotated

import reactivex as rx
from aiohttp import web
from pydantic import BaseModel, Field
from reactivex import operators as ops

import rxsse
from rxsse import EventBus, MessageEvent, controller, post, sse

TOPIC = "tasks.progress"
STEPS = 10


class Progress(BaseModel):
    """One step of a job: what its stream carries."""

    taskId: str
    progress: Annotated[int, Field(ge=0, le=100)]


class Started(BaseModel):
    """The answer to ``POST /tasks``: the job's id and where its progress streams."""

    id: str
    progress: str


@dataclass(frozen=True)
class Job:
    """A running job: its id, and its first event (progress 0) with the bus's id for it."""

    id: str
    first: MessageEvent


class JobRunner:
    """Runs simulated jobs on the event loop and publishes their progress (0..100)."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.jobs: dict[str, Job] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, duration: float) -> Job:
        """Start a job that takes ``duration`` seconds."""
        job_id = uuid.uuid4().hex
        data = Progress(taskId=job_id, progress=0)
        job = Job(job_id, MessageEvent(data, id=await self.bus.publish(TOPIC, data)))
        self.jobs[job_id] = job
        task = asyncio.get_running_loop().create_task(self._run(job, duration))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, job: Job, duration: float) -> None:
        try:
            for step in range(1, STEPS + 1):
                await asyncio.sleep(duration / STEPS)  # stands in for a slice of real work
                progress = step * 100 // STEPS
                await self.bus.publish(TOPIC, Progress(taskId=job.id, progress=progress))
        finally:
            del self.jobs[job.id]  # forget the job however it ended: nothing accumulates

    def progress(
        self, job_id: str, last_event_id: str | None
    ) -> rx.Observable[MessageEvent[Progress]]:
        """The job's events after ``last_event_id`` (from its start if None), until 100."""
        job = self.jobs.get(job_id)
        if job is None:
            raise rxsse.json_error(404, "no such task (unknown or finished)", task_id=job_id)
        after = last_event_id or job.first.id
        assert after is not None
        events = self.bus.on(TOPIC, last_event_id=after).pipe(
            ops.filter(lambda e: e.type == "reset" or e.data["taskId"] == job_id),
            ops.take_while(lambda e: e.type == "reset" or e.data["progress"] < 100, inclusive=True),
        )
        return events if last_event_id else rx.concat(rx.of(job.first), events)

    async def on_cleanup(self) -> None:
        """Cancel the jobs still running (called when the app shuts down)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@controller("/tasks")
class Tasks:
    """Start jobs and stream their progress."""

    def __init__(self, bus: EventBus) -> None:
        self.runner = JobRunner(bus)

    @post()
    async def create(
        self, duration: Annotated[float, Field(ge=0.05, le=600)] = 3.0
    ) -> web.Response:
        """Start a job that takes ``duration`` seconds; 202 with its id (a ``Started``)."""
        job = await self.runner.start(duration)
        started = Started(id=job.id, progress=f"/tasks/{job.id}/progress")
        return web.json_response(started.model_dump(), status=202)

    @sse("/{task_id}/progress")
    def progress(
        self, task_id: str, last_event_id: str | None = None
    ) -> rx.Observable[MessageEvent[Progress]]:
        """A job's progress, 0 to 100, resumable; it completes when the job is done."""
        return self.runner.progress(task_id, last_event_id)

    async def on_cleanup(self) -> None:
        """Stop running jobs with the app."""
        await self.runner.on_cleanup()


def create_app(tasks: Tasks | None = None, bus: EventBus | None = None) -> web.Application:
    """The progress example on its own (``tasks`` and ``bus`` default to fresh in-memory ones)."""
    bus = tasks.runner.bus if tasks is not None else (bus or EventBus())
    app = web.Application()
    rxsse.setup(app, tasks or Tasks(bus), bus=bus)
    return app


if __name__ == "__main__":
    from examples._run import main

    main(create_app, "progress example")
