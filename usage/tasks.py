from celery import shared_task

from usage.services import request_logs_prune


@shared_task
def request_logs_retention() -> int:
    return request_logs_prune()
