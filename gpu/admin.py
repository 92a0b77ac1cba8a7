from django import forms
from django.contrib import admin, messages
from django.utils import timezone

from billing.money import micro_to_credits
from gpu.jobs import job_cancel
from gpu.models import ComputeProvider, Deployment, GpuModel, Job, JobEvent, StoredFile
from gpu.storage import stored_file_delete, stored_files_delete
from gpu.upstreams import UpstreamError


@admin.register(StoredFile)
class StoredFileAdmin(admin.ModelAdmin):
    """Read-only: files change through the API; deleting here deletes the stored object too."""

    list_display = ("public_id", "organization", "kind", "status", "filename", "content_type", "size",
                    "created_at", "expires_at")
    list_filter = ("kind", "status", "created_at")
    search_fields = ("public_id", "filename", "sha256", "job_id", "organization__slug")
    list_select_related = ("organization",)
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in StoredFile._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def delete_model(self, request, obj):
        stored_file_delete(file=obj)

    def delete_queryset(self, request, queryset):
        stored_files_delete(files=queryset)


class JobEventInline(admin.TabularInline):
    model = JobEvent
    extra = 0
    can_delete = False
    readonly_fields = ("created_at", "kind", "detail", "dedupe_key")
    ordering = ("created_at", "pk")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    """Jobs change through the engine: cancel one (the provider is told, the hold released) or ask the
    provider about it at the next sweep."""

    list_display = ("public_id", "organization", "model", "status", "progress", "provider", "charged_credits",
                    "created_at", "finished_at")
    list_filter = ("status", "kind", "provider", "created_at")
    search_fields = ("public_id", "upstream_id", "request_id", "model", "organization__slug")
    list_select_related = ("organization", "provider")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Job._meta.fields if f.name != "callback_token"]
    exclude = ("callback_token",)  # the path a provider's webhook is accepted on: a secret
    inlines = [JobEventInline]
    actions = ["cancel", "poll_now"]

    @admin.display(description="Charged (credits)", ordering="charged")
    def charged_credits(self, obj):
        return None if obj.charged is None else micro_to_credits(obj.charged)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # a job is part of the books: its hold, its charge and its log row point at it

    @admin.action(description="Cancel selected jobs (release their holds)")
    def cancel(self, request, queryset):
        cancelled = failed = 0
        for job in queryset.filter(status__in=Job.ACTIVE).select_related("provider", "compute"):
            try:
                cancelled += job_cancel(job=job)
            except UpstreamError as exc:
                failed += 1
                self.message_user(request, f"{job.public_id}: the provider could not be told ({exc}).",
                                  messages.ERROR)
        self.message_user(request, f"Cancelled {cancelled} job(s).", messages.SUCCESS if not failed
                          else messages.WARNING)

    @admin.action(description="Poll selected jobs at the next sweep")
    def poll_now(self, request, queryset):
        due = queryset.filter(status__in=Job.ACTIVE).update(next_poll_at=timezone.now())
        self.message_user(request, f"{due} job(s) will be polled at the next sweep.", messages.SUCCESS)


class ComputeProviderForm(forms.ModelForm):
    queue_url = forms.URLField(max_length=500, assume_scheme="https", initial="https://api.runpod.ai/v2",
                               help_text="The queue API's root: /{endpoint}/run, /status/{id} … under it.")
    rest_url = forms.URLField(max_length=500, assume_scheme="https", initial="https://rest.runpod.io/v1",
                              help_text="The REST API's root: /endpoints, /templates under it.")
    api_key = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                              help_text="Stored encrypted. Leave empty to keep the current key.")

    class Meta:
        model = ComputeProvider
        fields = ("name", "kind", "queue_url", "rest_url", "api_key", "enabled")

    def save(self, commit=True):
        if new_key := self.cleaned_data.get("api_key"):
            self.instance.api_key = new_key
        return super().save(commit)


@admin.register(ComputeProvider)
class ComputeProviderAdmin(admin.ModelAdmin):
    form = ComputeProviderForm
    list_display = ("name", "kind", "queue_url", "rest_url", "enabled", "has_key")
    list_filter = ("kind", "enabled")

    @admin.display(boolean=True, description="API key set")
    def has_key(self, obj):
        return bool(obj.api_key_encrypted)


@admin.register(GpuModel)
class GpuModelAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "hardware", "price_unit", "price_credits", "max_seconds", "sync", "compute",
                    "endpoint_id", "enabled")
    list_filter = ("price_unit", "sync", "enabled", "compute")
    search_fields = ("slug", "name", "hardware", "endpoint_id")

    @admin.display(description="Price (credits)", ordering="unit_price")
    def price_credits(self, obj):
        return micro_to_credits(obj.unit_price)


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    """Deployments change through their API (the provider's endpoint follows); here they are read."""

    list_display = ("slug", "organization", "docker_image", "status", "workers_min", "workers_max", "compute",
                    "endpoint_id", "created_at")
    list_filter = ("status", "compute")
    search_fields = ("slug", "name", "docker_image", "endpoint_id", "organization__slug")
    list_select_related = ("organization", "compute")
    readonly_fields = [f.name for f in Deployment._meta.fields if f.name != "env_secrets_encrypted"]
    exclude = ("env_secrets_encrypted",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
