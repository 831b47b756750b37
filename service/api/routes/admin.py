"""Admin jobs that rebuild or update the index snapshot, behind the bearer token."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import AdminDep, StateDep
from service.jobs import Job
from service.schemas.admin import JobAccepted, JobProgress, JobResponse, SkippedFile
from service.schemas.errors import error_responses

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[AdminDep],
                   responses=error_responses(401, 403))


def _status_url(job: Job) -> str:
    return f"/v1/admin/jobs/{job.id}"


def _accepted(job: Job) -> JobAccepted:
    return JobAccepted(job_id=job.id, kind=job.kind, state=job.state, status_url=_status_url(job))


@router.post("/index/rebuild", status_code=202, response_model=JobAccepted, responses=error_responses(409))
def start_rebuild(state: StateDep) -> JobAccepted:
    """Start embedding the whole archive into a new snapshot; poll the returned job."""
    return _accepted(state.jobs.start("rebuild"))


@router.post("/index/update", status_code=202, response_model=JobAccepted, responses=error_responses(409))
def start_update(state: StateDep) -> JobAccepted:
    """Start a new snapshot that reuses unchanged images' vectors and embeds only new or changed files."""
    return _accepted(state.jobs.start("update"))


@router.get("/jobs/{job_id}", response_model=JobResponse, responses=error_responses(404))
def get_job(job_id: str, state: StateDep) -> JobResponse:
    """Return a job's state, progress, counts and skipped files."""
    job = state.jobs.get(job_id)
    return JobResponse(
        id=job.id, kind=job.kind, state=job.state,
        progress=JobProgress(stage=job.stage, done=job.done, total=job.total),
        created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
        snapshot_version=job.snapshot_version, image_count=job.image_count, caption_count=job.caption_count,
        reused=job.reused, embedded=job.embedded,
        skipped=[SkippedFile(path=path, reason=reason) for path, reason in job.skipped],
        error=job.error, status_url=_status_url(job),
    )
