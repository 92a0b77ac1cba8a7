from celery import shared_task

from orgs.webhooks import webhook_deliveries_due, webhook_deliveries_prune, webhook_delivery_attempt


@shared_task
def webhook_deliver(delivery_id: int) -> str | None:
    """One attempt; retries are scheduled in the database, not in Celery, so a lost worker loses nothing."""
    delivery = webhook_delivery_attempt(delivery_id=delivery_id)
    return delivery.status if delivery else None


@shared_task
def webhook_deliveries_retry() -> int:
    due = webhook_deliveries_due()
    for delivery_id in due:
        webhook_deliver.delay(delivery_id)
    return len(due)


@shared_task
def webhook_deliveries_retention() -> int:
    return webhook_deliveries_prune()
