from django.contrib import admin, messages

from apikeys.models import ApiKey, BudgetAlert
from apikeys.services import api_key_disable, api_key_enable, api_key_revoke
from billing.money import micro_to_credits


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "redacted", "organization", "created_by", "limit_credits", "auto_disable",
                    "created_at", "last_used_at", "disabled_at", "revoked_at")
    list_filter = ("created_at", "last_used_at", ("revoked_at", admin.EmptyFieldListFilter),
                   ("disabled_at", admin.EmptyFieldListFilter))
    search_fields = ("name", "last4", "organization__slug", "created_by__email")
    readonly_fields = ("key_hash", "last4", "created_at", "last_used_at", "revoked_at", "disabled_reason")
    autocomplete_fields = ("organization", "created_by")
    actions = ("revoke", "disable", "enable")

    @admin.display(description="Monthly limit (credits)", ordering="monthly_spend_limit")
    def limit_credits(self, obj):
        return None if obj.monthly_spend_limit is None else micro_to_credits(obj.monthly_spend_limit)

    def has_add_permission(self, request):
        return False  # the plaintext must be shown once: create keys with `manage.py apikey create`

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset):
        keys = list(queryset.filter(revoked_at__isnull=True).select_related("organization"))
        for key in keys:
            api_key_revoke(key=key, actor=request.user, ip=request.META.get("REMOTE_ADDR"))
        self.message_user(request, f"Revoked {len(keys)} key(s).", messages.SUCCESS)

    @admin.action(description="Disable selected keys")
    def disable(self, request, queryset):
        keys = list(queryset.filter(disabled_at__isnull=True).select_related("organization"))
        for key in keys:
            api_key_disable(key=key, reason="Disabled by an operator.", actor=request.user,
                            ip=request.META.get("REMOTE_ADDR"))
        self.message_user(request, f"Disabled {len(keys)} key(s).", messages.SUCCESS)

    @admin.action(description="Re-enable selected keys")
    def enable(self, request, queryset):
        keys = list(queryset.filter(disabled_at__isnull=False).select_related("organization"))
        for key in keys:
            api_key_enable(key=key, actor=request.user, ip=request.META.get("REMOTE_ADDR"))
        self.message_user(request, f"Re-enabled {len(keys)} key(s).", messages.SUCCESS)


@admin.register(BudgetAlert)
class BudgetAlertAdmin(admin.ModelAdmin):
    list_display = ("created_at", "key", "month", "threshold")
    list_filter = ("threshold", "month")
    search_fields = ("key__name", "key__organization__slug")
    readonly_fields = ("key", "month", "threshold", "created_at")

    def has_add_permission(self, request):
        return False
