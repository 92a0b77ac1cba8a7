from celery import shared_task

from gpu.storage import stored_files_delete_expired


@shared_task
def stored_files_expire() -> int:
    return stored_files_delete_expired()
