"""Background admin jobs that rebuild or update the index snapshot.

At most one job runs at a time. A job builds and publishes a new snapshot on
disk with the index package, opens it, and only then swaps it into serving; a
job that fails at any step leaves the serving snapshot as it was.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Optional

from service.core.errors import Conflict, NotFound
from service.core.metrics import ServiceMetrics

logger = logging.getLogger(__name__)

JOB_KINDS = ("rebuild", "update")


@dataclass
class Job:
    """State of one admin job; read by the API while the worker thread updates it."""

    id: str
    kind: str
    state: str = "queued"
    stage: str = "queued"
    done: int = 0
    total: int = 0
    created_at: float = field(default_factory=time.time)
    started_at: Optional[float] = None
    finished_at: Optional[float] = None
    snapshot_version: Optional[str] = None
    image_count: Optional[int] = None
    caption_count: Optional[int] = None
    reused: Optional[int] = None
    embedded: Optional[int] = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    error: Optional[str] = None


# Runs the job's build and returns the report; receives the progress callback
# and the stop check that the index package's builders accept.
BuildRunner = Callable[[str, Callable, Callable[[], bool]], object]
# Opens the published snapshot and swaps it into serving.
Publisher = Callable[[object], None]


class JobManager:
    """Starts admin jobs in a background thread and keeps their records."""

    def __init__(self, run_build: BuildRunner, publish: Publisher, metrics: ServiceMetrics, *, max_kept: int = 100):
        self._run_build = run_build
        self._publish = publish
        self._metrics = metrics
        self._max_kept = max_kept
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._active: Optional[Job] = None
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()

    def start(self, kind: str) -> Job:
        """Start a job of ``kind``; raise ``Conflict`` while another job runs."""
        if kind not in JOB_KINDS:
            raise ValueError(f"unknown job kind {kind!r}; expected one of {JOB_KINDS}")
        with self._lock:
            if self._active is not None:
                raise Conflict(f"job {self._active.id} ({self._active.kind}) is still {self._active.state}; "
                               "wait for it to finish", code="job_running")
            job = Job(id=uuid.uuid4().hex[:16], kind=kind)
            self._jobs[job.id] = job
            self._active = job
            self._trim()
            self._thread = threading.Thread(target=self._run, args=(job,), name=f"job-{job.id}", daemon=True)
            self._thread.start()
        self._update_metrics()
        logger.info("started %s job %s", kind, job.id)
        return job

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"job {job_id!r} not found", code="job_not_found")
        return job

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Ask a running job to stop and wait up to ``timeout_s`` for it."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            logger.info("waiting up to %.0fs for the running job to stop", timeout_s)
            thread.join(timeout_s)

    def _run(self, job: Job) -> None:
        job.state, job.stage, job.started_at = "running", "starting", time.time()
        self._update_metrics()
        try:
            report = self._run_build(job.kind, lambda progress: self._on_progress(job, progress), self._stop.is_set)
            job.stage = "publishing"
            self._publish(report)
            self._record_report(job, report)
            job.state, job.stage = "succeeded", "done"
            logger.info("%s job %s published snapshot %s in %.1fs", job.kind, job.id, job.snapshot_version,
                        time.time() - job.started_at)
        except Exception as error:  # the job record carries the failure; serving continues unchanged
            job.state, job.error = "failed", f"{type(error).__name__}: {error}"
            logger.exception("%s job %s failed; the serving snapshot is unchanged", job.kind, job.id)
        finally:
            job.finished_at = time.time()
            with self._lock:
                self._active = None
            self._update_metrics()

    @staticmethod
    def _on_progress(job: Job, progress) -> None:
        job.stage, job.done, job.total = progress.stage, progress.done, progress.total

    @staticmethod
    def _record_report(job: Job, report) -> None:
        job.snapshot_version = str(report.version)
        job.image_count, job.caption_count = report.image_count, report.caption_count
        job.reused, job.embedded = report.reused, report.embedded
        job.skipped = [(str(path), str(reason)) for path, reason in report.skipped]
        job.done = job.total = report.image_count

    def _trim(self) -> None:
        finished = [job for job in self._jobs.values() if job is not self._active]
        for job in finished[: max(0, len(self._jobs) - self._max_kept)]:
            del self._jobs[job.id]

    def _update_metrics(self) -> None:
        with self._lock:
            jobs = list(self._jobs.values())
        for kind in JOB_KINDS:
            counts: dict[str, int] = {}
            for job in jobs:
                if job.kind == kind:
                    counts[job.state] = counts.get(job.state, 0) + 1
            self._metrics.set_job_state(kind, counts)
