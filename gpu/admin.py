from django.contrib import admin, messages
from django.utils import timezone

from billing.money import micro_to_credits
from gpu.jobs import job_cancel
from gpu.models import Job, JobEvent, StoredFile
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
        for job in queryset.filter(status__in=Job.ACTIVE).select_related("provider"):
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
