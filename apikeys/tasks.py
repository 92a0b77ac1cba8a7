from celery import shared_task

from apikeys.services import budget_alert_send


@shared_task(autoretry_for=(Exception,), retry_backoff=True, max_retries=5)
def budget_threshold_reached(key_id: int, month: str, threshold: int) -> bool:
    return budget_alert_send(key_id=key_id, month=month, threshold=threshold)
