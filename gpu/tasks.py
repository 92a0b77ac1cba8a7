from celery import shared_task

from gpu.jobs import job_claim_for_read, job_poll, jobs_poll_due
from gpu.storage import stored_files_delete_expired

POLL_SECONDS = 4  # of each 5-second beat: the next sweep starts as this one ends


@shared_task
def stored_files_expire() -> int:
    return stored_files_delete_expired()


@shared_task
def jobs_poll() -> int:
    """The beat's sweep: every job due for a poll (the rows say which; no countdowns to lose)."""
    return jobs_poll_due(seconds=POLL_SECONDS)


@shared_task
def job_poll_now(job_id: int) -> None:
    """A provider's webhook said something happened: ask it now (the beat would, a little later)."""
    if (lease := job_claim_for_read(job_id=job_id)) is not None:
        job_poll(job_id=job_id, lease=lease)
