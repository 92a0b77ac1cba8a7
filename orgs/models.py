import secrets

from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.db import models

from core.crypto import Encrypted
from orgs.events import AuditAction, WebhookEvent
from orgs.roles import OWNER, ROLE_CHOICES


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create(self, email: str, password: str | None, **extra):
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra):
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra):
        return self._create(email, password, is_staff=True, is_superuser=True, **extra)


class User(AbstractUser):
    """Logs in with an email address; there is no username."""

    username = None
    email = models.EmailField("email address", unique=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    objects = UserManager()

    def __str__(self) -> str:
        return self.email


class Organization(models.Model):
    class Kind(models.TextChoices):
        PERSONAL = "personal", "Personal"
        TEAM = "team", "Team"

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.TEAM)
    # Shared by all of the organization's keys; empty = the defaults from settings.
    rate_limit_rpm = models.PositiveIntegerField(null=True, blank=True, verbose_name="requests per minute")
    rate_limit_tpm = models.PositiveIntegerField(null=True, blank=True, verbose_name="tokens per minute")
    created_at = models.DateTimeField(auto_now_add=True)
    deleted_at = models.DateTimeField(null=True, blank=True,
                                      help_text="Deleted organizations keep their ledger and audit history.")

    def __str__(self) -> str:
        return self.slug


class Membership(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=ROLE_CHOICES, default=OWNER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "user"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"


class AuditEvent(models.Model):
    """A privileged action: who did what to which object, with the values before and after."""

    organization = models.ForeignKey(Organization, null=True, blank=True, on_delete=models.CASCADE,
                                     related_name="audit_events")
    actor = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                              help_text="Empty when the system acted (e.g. a key auto-disabled at its limit).")
    action = models.CharField(max_length=64, db_index=True, choices=AuditAction.choices)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        indexes = [models.Index(fields=["organization", "-created_at"], name="audit_org_time")]

    def __str__(self) -> str:
        return f"{self.action} {self.target_type}:{self.target_id}"


class Invitation(models.Model):
    """An emailed invitation to join with a role; only the token's SHA-256 is stored."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=16, choices=ROLE_CHOICES)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    invited_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["organization", "-created_at"], name="invitation_org_time")]

    def __str__(self) -> str:
        return f"{self.email} → {self.organization} ({self.role})"


def _provider_id() -> str:
    return "sso_" + secrets.token_hex(8)


class SSOConnection(models.Model):
    """An organization's identity provider; users of its email domain sign in through it."""

    class Type(models.TextChoices):
        SAML = "saml", "SAML 2.0"
        OIDC = "oidc", "OpenID Connect"

    organization = models.OneToOneField(Organization, on_delete=models.CASCADE, related_name="sso")
    provider_id = models.CharField(max_length=40, unique=True, default=_provider_id, editable=False)
    type = models.CharField(max_length=8, choices=Type.choices)
    domain = models.CharField(max_length=253, unique=True, help_text="Email domain routed to this IdP.")
    default_role = models.CharField(max_length=16, choices=ROLE_CHOICES, default="viewer",
                                    help_text="Role of members who join on their first SSO sign-in.")
    sso_required = models.BooleanField(default=False, help_text="Refuse password logins for this domain.")
    enabled = models.BooleanField(default=True)
    # SAML: from the IdP's metadata (public data).
    metadata_xml = models.TextField(blank=True)
    idp_entity_id = models.CharField(max_length=500, blank=True)
    idp_sso_url = models.URLField(max_length=500, blank=True)
    idp_x509_cert = models.TextField(blank=True)
    # OIDC: the client secret is encrypted; discovery is recorded when saved.
    issuer = models.URLField(max_length=500, blank=True)
    client_id = models.CharField(max_length=300, blank=True)
    client_secret_encrypted = models.TextField(blank=True, editable=False)
    discovery = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=16, default="ok", help_text="ok or error, from the last check.")
    status_detail = models.CharField(max_length=500, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.type} SSO for {self.domain}"

    client_secret = Encrypted("client_secret_encrypted")


class SAMLAssertionSeen(models.Model):
    """Assertion ids already consumed: a replayed SAML response is refused."""

    connection = models.ForeignKey(SSOConnection, on_delete=models.CASCADE, related_name="+")
    assertion_id = models.CharField(max_length=200)
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["connection", "assertion_id"], name="saml_assertion_once")]


class Webhook(models.Model):
    """An endpoint an organization subscribes to events; every delivery is signed with its secret."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=500, blank=True, help_text="Empty for the request webhook.")
    secret_encrypted = models.TextField(editable=False)
    events = models.JSONField(default=list, help_text="Event types delivered here (orgs.events.WebhookEvent).")
    enabled = models.BooleanField(default=True)
    for_requests = models.BooleanField(
        default=False, help_text="The organization's request webhook: it subscribes to nothing, and signs the "
                                 "events sent to the webhookUrl a request names.")
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["organization", "-created_at"], name="webhook_org_time")]
        constraints = [models.UniqueConstraint(fields=["organization"], condition=models.Q(for_requests=True),
                                               name="webhook_one_request_webhook")]

    def __str__(self) -> str:
        return self.url

    secret = Encrypted("secret_encrypted")


class WebhookDelivery(models.Model):
    """One event for one webhook: the exact body sent, and how its attempts went."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    url = models.URLField(max_length=500, blank=True,
                          help_text="Where it goes when not to its webhook's URL: a request's webhookUrl.")
    event_id = models.CharField(max_length=40, help_text="Shared by every webhook the event goes to.")
    event_type = models.CharField(max_length=64, choices=WebhookEvent.choices)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True,
                                           help_text="When a pending delivery is due; empty once settled.")
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        constraints = [models.UniqueConstraint(fields=["webhook", "event_id"], name="webhook_delivery_once")]
        indexes = [
            models.Index(fields=["webhook", "-created_at"], name="webhook_delivery_time"),
            models.Index(fields=["next_attempt_at"], condition=models.Q(status="pending"),
                         name="webhook_delivery_due"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} → {self.webhook_id} ({self.status})"
