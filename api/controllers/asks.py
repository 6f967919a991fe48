"""One-off questions about a source and the jobs that answer them."""

from __future__ import annotations

from litestar import Controller, get, post
from litestar.status_codes import HTTP_202_ACCEPTED

from api import routes
from api.auth import CONTROL, require_scope
from api.controllers import CHANGES, SECURED, errors
from api.jobs import JobService
from api.schemas import AskIn, JobAccepted, JobOut


class AsksController(Controller):
    tags = ["asks"]
    guards = [require_scope]
    security = SECURED

    @post(
        routes.ASK,
        name="asks:ask",
        operation_id="askQuestion",
        status_code=HTTP_202_ACCEPTED,
        opt={"scope": CONTROL},
        responses=errors(401, *CHANGES, 404, 413, 422, 429),
    )
    async def ask(self, name: str, data: AskIn, jobs: JobService) -> JobAccepted:
        """Queue a question about what the source shows now; poll the link for the answer
        (the answer also streams on the source's SSE as `chunk` events with kind=answer)."""
        job_id = await jobs.ask(name, data.question)
        return JobAccepted(job_id, routes.job_link(job_id))

    @get(routes.JOB, name="asks:job", operation_id="getJob", responses=errors(401, 404))
    async def job(self, job_id: str, jobs: JobService) -> JobOut:
        """State of a question's job and, once done, its answer."""
        return await jobs.job(job_id)
