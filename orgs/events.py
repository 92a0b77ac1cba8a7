"""Every name an action is recorded or announced under, in one registry.

``AuditAction`` names the rows of the audit log; ``WebhookEvent`` the events an organization's webhooks
receive. Services pass these members, never free strings: ``audit_record`` and ``webhook_event_emit``
refuse anything else, so a name is declared here once and cannot drift between emitters and readers.
"""

from django.db import models


class AuditAction(models.TextChoices):
    ORG_CREATE = "org.create", "Organization created"
    ORG_RENAME = "org.rename", "Organization renamed"
    ORG_DELETE = "org.delete", "Organization deleted"
    ORG_OWNERSHIP_TRANSFER = "org.ownership_transfer", "Ownership transferred"
    MEMBER_ROLE_CHANGE = "member.role_change", "Member's role changed"
    MEMBER_REMOVE = "member.remove", "Member removed"
    MEMBER_LEAVE = "member.leave", "Member left"
    MEMBER_SSO_JOIN = "member.sso_join", "Member joined through single sign-on"
    INVITATION_CREATE = "invitation.create", "Invitation sent"
    INVITATION_REVOKE = "invitation.revoke", "Invitation revoked"
    INVITATION_ACCEPT = "invitation.accept", "Invitation accepted"
    SSO_CONFIGURE = "sso.configure", "Single sign-on configured"
    SSO_DELETE = "sso.delete", "Single sign-on removed"
    WEBHOOK_CREATE = "webhook.create", "Webhook created"
    WEBHOOK_UPDATE = "webhook.update", "Webhook changed"
    WEBHOOK_DELETE = "webhook.delete", "Webhook deleted"
    WEBHOOK_ROTATE_SECRET = "webhook.rotate_secret", "Webhook secret rotated"
    WEBHOOK_REQUEST_SECRET = "webhook.request_secret", "Request-webhook signing secret issued"
    API_KEY_CREATE = "api_key.create", "API key created"
    API_KEY_UPDATE = "api_key.update", "API key changed"
    API_KEY_REVOKE = "api_key.revoke", "API key revoked"
    API_KEY_DISABLE = "api_key.disable", "API key disabled"
    API_KEY_ENABLE = "api_key.enable", "API key enabled"
    BILLING_TOPUP_STARTED = "billing.topup_started", "Top-up started"
    BILLING_TOPUP_PAID = "billing.topup_paid", "Top-up paid"
    BILLING_DISPUTE_OPENED = "billing.dispute_opened", "Payment disputed"
    DEPLOYMENT_CREATE = "deployment.create", "GPU deployment created"
    DEPLOYMENT_UPDATE = "deployment.update", "GPU deployment changed"
    DEPLOYMENT_DELETE = "deployment.delete", "GPU deployment deleted"


class WebhookEvent(models.TextChoices):
    """Labels say when each event is sent (shown to people choosing what to subscribe to)."""

    API_KEY_BUDGET_ALERT = "api_key.budget_alert", "An API key reached 80 % or 100 % of its monthly spending limit."
    API_KEY_DISABLED = "api_key.disabled", ("An API key was disabled: by a member, by an operator, or at its "
                                            "spending limit.")
    BILLING_CREDITS_ADDED = "billing.credits_added", "Credits were added to the wallet: a top-up paid, a dispute won."
    BILLING_CREDITS_REMOVED = "billing.credits_removed", "Credits were taken back: a refund, a dispute opened."
    JOB_STARTED = "job.started", "A long-running job (a video, a GPU run) started running."
    JOB_COMPLETED = "job.completed", "A job finished: its outputs are stored and its credits settled."
    JOB_FAILED = "job.failed", "A job failed, timed out or was cancelled: its hold was released."
    WEBHOOK_TEST = "webhook.test", "Sent on request to one webhook, whatever it subscribes to."


# What an endpoint can subscribe to: every event but the test, which goes only where it is asked for.
SUBSCRIBABLE_EVENTS = tuple(event for event in WebhookEvent if event is not WebhookEvent.WEBHOOK_TEST)
