import json
import secrets

from django.db import models

from core.crypto import Encrypted, decrypt, encrypt


def _stored_file_id() -> str:
    return "file_" + secrets.token_hex(16)  # 128 random bits: an id is never guessed from another


class StoredFile(models.Model):
    """A file of an organization's jobs, kept in the "hypereal" storage (see gpu/storage.py)."""

    class Kind(models.TextChoices):
        INPUT = "input"
        OUTPUT = "output"
        DATASET = "dataset"
        WEIGHTS = "weights"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending upload"  # a presigned upload that was not completed yet
        AVAILABLE = "available"

    public_id = models.CharField(max_length=40, unique=True, default=_stored_file_id, editable=False)
    organization = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="stored_files")
    api_key = models.ForeignKey("apikeys.ApiKey", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="+", help_text="The key that uploaded it.")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.AVAILABLE)
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=255)
    size = models.BigIntegerField(help_text="Bytes.")
    sha256 = models.CharField(max_length=64, blank=True, help_text="Hex; empty until a pending upload completes.")
    storage_name = models.CharField(max_length=512, help_text="The object's name in the storage.")
    # Filled by the job engine (no Job model yet): the job that produced this output.
    job_id = models.CharField(max_length=64, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Deleted after this; empty = kept.")

    class Meta:
        indexes = [
            models.Index(fields=["organization", "kind", "-created_at"], name="storedfile_org_kind_time"),
            models.Index(fields=["organization", "-created_at"], name="storedfile_org_time"),
            models.Index(fields=["expires_at"], name="storedfile_expiry", condition=models.Q(expires_at__isnull=False)),
            models.Index(fields=["job_id"], name="storedfile_job", condition=models.Q(job_id__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} ({self.filename})"


def _job_id() -> str:
    return "job_" + secrets.token_hex(12)


def _callback_token() -> str:
    return secrets.token_urlsafe(24)  # the path a provider's webhook for this job is accepted on


class Job(models.Model):
    """One long-running piece of work (a video, a GPU run): the row is the truth, the poller its clock.

    The exact target that took the job (provider, upstream model, the provider's job id and URLs) is kept,
    so every poll, download and cancel goes where the job is, never to a re-resolved target. Money moves
    exactly once: a hold at submit, then one settlement, under a compare-and-swap on ``status``.
    """

    class Kind(models.TextChoices):
        VIDEO = "video", "Video"
        GPU = "gpu", "GPU model"
        GPU_RUN = "gpu_run", "Deployment run"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        TIMED_OUT = "timed_out", "Timed out"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    public_id = models.CharField(max_length=40, unique=True, default=_job_id, editable=False)
    organization = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="jobs")
    api_key = models.ForeignKey("apikeys.ApiKey", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="jobs")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    model = models.CharField(max_length=120, help_text="The public model id the job was asked of.")
    endpoint = models.CharField(max_length=64, help_text="How it was asked: videos.generate, videos, …")
    request_id = models.CharField(max_length=64, unique=True, help_text="Its request log row.")
    idempotency_key = models.CharField(max_length=200, null=True, blank=True,
                                       help_text="The client's: a retried submit returns this job.")
    # Where it runs: a catalog provider (videos), or a compute provider's endpoint (GPU models, deployments).
    provider = models.ForeignKey("gateway.Provider", null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="jobs")
    compute = models.ForeignKey("ComputeProvider", null=True, blank=True, on_delete=models.PROTECT,
                                related_name="jobs")
    deployment = models.ForeignKey("Deployment", null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="jobs")
    upstream_model = models.CharField(max_length=200, help_text="The provider's model, or the endpoint's id.")
    upstream_id = models.CharField(max_length=200, blank=True, help_text="The provider's id of the job.")
    upstream_urls = models.JSONField(default=dict, blank=True, help_text="The provider's own status/result URLs.")
    callback_token = models.CharField(max_length=64, unique=True, default=_callback_token, editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    input = models.JSONField(default=dict, help_text="What was asked, inline media replaced by their size.")
    output = models.JSONField(default=dict, blank=True, help_text="Stored files and what the provider reported.")
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    # The price when it was submitted: what it settles at, whatever the catalog says later.
    price_unit = models.CharField(max_length=16)
    unit_price = models.BigIntegerField(help_text="Micro-credits per unit.")
    units = models.PositiveIntegerField(help_text="Units held for: the requested seconds, or 1 clip.")
    hold = models.OneToOneField("billing.Hold", null=True, blank=True, on_delete=models.PROTECT, related_name="job")
    charged = models.BigIntegerField(null=True, blank=True, help_text="Micro-credits settled; empty until it ends.")
    spend_month = models.CharField(max_length=7, help_text="The key's month its hold counts against (YYYY-MM).")
    webhook_url = models.URLField(max_length=500, blank=True)
    # The poller's bookkeeping: when to ask next, how it has gone, and who holds the job meanwhile.
    next_poll_at = models.DateTimeField(null=True, blank=True)
    polls = models.PositiveIntegerField(default=0)
    polled_at = models.DateTimeField(null=True, blank=True)
    error_streak = models.PositiveSmallIntegerField(default=0, help_text="Failed polls in a row.")
    lease_until = models.DateTimeField(null=True, blank=True)
    lease = models.PositiveIntegerField(default=0, help_text="Claim generation: only its holder writes progress.")
    deadline_at = models.DateTimeField()
    queued_ms = models.PositiveIntegerField(null=True, blank=True)
    exec_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "idempotency_key"], name="job_idempotency",
                                               condition=models.Q(idempotency_key__isnull=False))]
        indexes = [
            models.Index(fields=["next_poll_at"], name="job_due", condition=models.Q(status__in=["queued", "running"])),
            models.Index(fields=["organization", "-created_at"], name="job_org_time"),
        ]

    def __str__(self) -> str:
        return f"{self.public_id} {self.model} {self.status}"

    @property
    def active(self) -> bool:
        return self.status in self.ACTIVE


class JobEvent(models.Model):
    """A job's timeline: submitted, started, each provider webhook, polls that failed, the end."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=32)
    detail = models.JSONField(default=dict, blank=True)
    dedupe_key = models.CharField(max_length=200, null=True, blank=True,
                                  help_text="A provider webhook's own id: a redelivery is recorded once.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "dedupe_key"], name="job_event_once",
                                               condition=models.Q(dedupe_key__isnull=False))]
        indexes = [models.Index(fields=["job", "created_at"], name="job_event_time")]

    def __str__(self) -> str:
        return f"{self.job_id} {self.kind}"


class ComputeProvider(models.Model):
    """An engine that runs GPU workers: RunPod serverless (its queue and REST APIs), or the simulator
    speaking them. Its key is stored encrypted, like upstream providers' keys."""

    class Kind(models.TextChoices):
        RUNPOD = "runpod", "RunPod serverless"

    name = models.SlugField(max_length=80, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.RUNPOD)
    queue_url = models.URLField(max_length=500, default="https://api.runpod.ai/v2",
                                help_text="The queue API's root: /{endpoint}/run, /status/{id} … under it.")
    rest_url = models.URLField(max_length=500, default="https://rest.runpod.io/v1",
                               help_text="The REST API's root: /endpoints, /templates under it.")
    api_key_encrypted = models.TextField(blank=True, editable=False)
    enabled = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.name

    api_key = Encrypted("api_key_encrypted")


class GpuModel(models.Model):
    """A hosted GPU model, served at /v1/gpu/{slug} by an endpoint of a compute provider."""

    class PriceUnit(models.TextChoices):
        CALL = "request", "Per call"
        SECOND = "second", "Per GPU-second"

    slug = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=120)
    description = models.CharField(max_length=300, blank=True)
    hardware = models.CharField(max_length=80, help_text="e.g. NVIDIA A100 80GB.")
    price_unit = models.CharField(max_length=16, choices=PriceUnit.choices, default=PriceUnit.SECOND)
    unit_price = models.BigIntegerField(help_text="Micro-credits per call or per GPU-second.")
    max_seconds = models.PositiveIntegerField(help_text="The longest a call may run (and the most it is billed).")
    sync = models.BooleanField(default=False, help_text="Answered inline (runsync) rather than queued.")
    compute = models.ForeignKey(ComputeProvider, on_delete=models.PROTECT, related_name="gpu_models")
    endpoint_id = models.CharField(max_length=100, help_text="The compute provider's endpoint serving it.")
    enabled = models.BooleanField(default=True)

    class Meta:
        verbose_name = "GPU model"
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class Deployment(models.Model):
    """An organization's own worker image (e.g. runpod/worker-comfyui) on a compute provider's GPUs."""

    class Status(models.TextChoices):
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    organization = models.ForeignKey("orgs.Organization", on_delete=models.CASCADE, related_name="deployments")
    slug = models.SlugField(max_length=80)
    name = models.CharField(max_length=120)
    docker_image = models.CharField(max_length=300)
    gpu_types = models.JSONField(default=list, help_text="GPU tiers it may run on, in order of preference.")
    workers_min = models.PositiveSmallIntegerField(default=0)
    workers_max = models.PositiveSmallIntegerField(default=1)
    idle_timeout = models.PositiveIntegerField(default=5, help_text="Seconds a worker stays up idle.")
    max_seconds = models.PositiveIntegerField(default=600, help_text="The longest a run may take (and be billed).")
    webhook_url = models.URLField(max_length=500, blank=True, help_text="Receives its runs' results.")
    env = models.JSONField(default=dict, blank=True, help_text="Environment variables (not secret).")
    env_secrets_encrypted = models.TextField(blank=True, editable=False,
                                             help_text="Secret environment variables, encrypted.")
    compute = models.ForeignKey(ComputeProvider, on_delete=models.PROTECT, related_name="deployments")
    endpoint_id = models.CharField(max_length=100, blank=True, help_text="The compute provider's endpoint.")
    template_id = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.READY)
    created_by = models.ForeignKey("orgs.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "slug"], name="deployment_slug_unique")]

    def __str__(self) -> str:
        return f"{self.organization}/{self.slug}"

    @property
    def env_secrets(self) -> dict:
        return json.loads(decrypt(self.env_secrets_encrypted) or "{}")

    @env_secrets.setter
    def env_secrets(self, value: dict) -> None:
        self.env_secrets_encrypted = encrypt(json.dumps(value)) if value else ""
