from django.contrib import admin, messages
from django.utils import timezone

from apikeys.models import ApiKey
from billing.money import micro_to_credits


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "redacted", "organization", "created_by", "limit_credits", "created_at",
                    "last_used_at", "disabled_at", "revoked_at")
    list_filter = ("created_at", "last_used_at", ("revoked_at", admin.EmptyFieldListFilter),
                   ("disabled_at", admin.EmptyFieldListFilter))
    search_fields = ("name", "last4", "organization__slug", "created_by__email")
    readonly_fields = ("key_hash", "last4", "created_at", "last_used_at", "revoked_at")
    autocomplete_fields = ("organization", "created_by")
    actions = ("revoke", "disable", "enable")

    @admin.display(description="Monthly limit (credits)", ordering="monthly_spend_limit")
    def limit_credits(self, obj):
        return None if obj.monthly_spend_limit is None else micro_to_credits(obj.monthly_spend_limit)

    def has_add_permission(self, request):
        return False  # the plaintext must be shown once: create keys with `manage.py apikey create`

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset):
        n = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {n} key(s).", messages.SUCCESS)

    @admin.action(description="Disable selected keys")
    def disable(self, request, queryset):
        n = queryset.filter(disabled_at__isnull=True).update(disabled_at=timezone.now())
        self.message_user(request, f"Disabled {n} key(s).", messages.SUCCESS)

    @admin.action(description="Re-enable selected keys")
    def enable(self, request, queryset):
        n = queryset.update(disabled_at=None)
        self.message_user(request, f"Re-enabled {n} key(s).", messages.SUCCESS)
