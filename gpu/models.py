import secrets

from django.db import models


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
