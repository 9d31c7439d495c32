"""Progress of long-running jobs: ``POST /tasks`` starts one and returns its id;
``GET /tasks/{task_id}/progress`` streams 0..100 and completes when the job is done.

Each job's progress lives in a BehaviorSubject, so a client that connects late still gets the
current value first. When the job ends the subject is completed and forgotten: a finished or
unknown id is a 404 (which also stops a reconnecting browser).

Run it: ``python -m examples.progress``, then
``curl -X POST 'http://127.0.0.1:8080/tasks?duration=5'`` and
``curl -N http://127.0.0.1:8080/tasks/<id>/progress``.
"""

from __future__ import annotations

import asyncio
import uuid

import reactivex as rx
from aiohttp import web
from reactivex import operators as ops
from reactivex.subject import BehaviorSubject

import rxsse
from examples._params import within
from rxsse import MessageEvent, controller, post, sse

STEPS = 10


class JobRunner:
    """Runs simulated jobs on the event loop and publishes their progress (0..100)."""

    def __init__(self) -> None:
        self.jobs: dict[str, BehaviorSubject[int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, duration: float) -> str:
        """Start a job that takes ``duration`` seconds; return its id."""
        job_id = uuid.uuid4().hex
        progress: BehaviorSubject[int] = BehaviorSubject(0)
        self.jobs[job_id] = progress
        task = asyncio.get_running_loop().create_task(self._run(job_id, progress, duration))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job_id

    async def _run(self, job_id: str, progress: BehaviorSubject[int], duration: float) -> None:
        try:
            for step in range(1, STEPS + 1):
                await asyncio.sleep(duration / STEPS)  # stands in for a slice of real work
                progress.on_next(step * 100 // STEPS)
            progress.on_completed()
        finally:
            # Forget the job however it ended, so nothing accumulates.
            del self.jobs[job_id]

    async def on_cleanup(self) -> None:
        """Cancel the jobs still running (called when the app shuts down)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@controller("/tasks")
class Tasks:
    """Start jobs and stream their progress."""

    def __init__(self, runner: JobRunner | None = None) -> None:
        self.runner = runner or JobRunner()

    @post()
    def create(self, duration: float = 3.0) -> web.Response:
        within(duration, 0.05, 600, parameter="duration", unit="seconds")
        job_id = self.runner.start(duration)
        return web.json_response(
            {"id": job_id, "progress": f"/tasks/{job_id}/progress"}, status=202
        )

    @sse("/{task_id}/progress")
    def progress(self, task_id: str) -> rx.Observable[MessageEvent]:
        job = self.runner.jobs.get(task_id)
        if job is None:
            raise rxsse.json_error(404, "no such task (unknown or finished)", task_id=task_id)
        return job.pipe(
            ops.map(lambda percent: MessageEvent({"taskId": task_id, "progress": percent}))
        )

    async def on_cleanup(self) -> None:
        """Stop running jobs with the app."""
        await self.runner.on_cleanup()


def create_app(tasks: Tasks | None = None) -> web.Application:
    """The progress example on its own (with ``tasks`` as its controller, if given)."""
    app = web.Application()
    rxsse.setup(app, tasks or Tasks())
    return app


if __name__ == "__main__":
    from examples._run import main

    main(create_app, "progress example")
