from django.contrib import admin

from gpu.models import StoredFile
from gpu.storage import stored_file_delete, stored_files_delete


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
