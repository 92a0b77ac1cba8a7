from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from orgs.models import AuditEvent, Membership, Organization, User, Webhook, WebhookDelivery
from orgs.webhooks import webhook_update


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ("email",)
    list_display = ("email", "first_name", "last_name", "is_staff", "is_active", "date_joined")
    search_fields = ("email", "first_name", "last_name")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ("user",)


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "kind", "rate_limit_rpm", "rate_limit_tpm", "created_at")
    list_filter = ("kind",)
    search_fields = ("slug", "name")
    fieldsets = (
        (None, {"fields": ("name", "slug", "kind")}),
        ("Rate limits (empty = default from settings)", {"fields": ("rate_limit_rpm", "rate_limit_tpm")}),
    )
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("organization", "user", "role", "created_at")
    list_filter = ("role",)
    search_fields = ("organization__slug", "user__email")
    autocomplete_fields = ("organization", "user")


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "organization", "actor", "action", "target_type", "target_id", "ip")
    list_filter = ("action", "created_at")
    search_fields = ("action", "target_id", "organization__slug", "actor__email")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in AuditEvent._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):
    """Read-only but for switching webhooks off and on (audited); the secret is never shown."""

    list_display = ("url", "organization", "enabled", "events", "created_by", "created_at")
    list_filter = ("enabled", "created_at")
    search_fields = ("url", "organization__slug", "created_by__email")
    fields = readonly_fields = ("organization", "url", "events", "enabled", "created_by", "created_at")
    actions = ("disable", "enable")

    def has_add_permission(self, request):
        return False  # the secret must be shown once: members create webhooks with the API

    def _set_enabled(self, request, queryset, enabled: bool) -> int:
        webhooks = list(queryset.exclude(enabled=enabled).select_related("organization"))
        for webhook in webhooks:
            webhook_update(webhook=webhook, changes={"enabled": enabled}, actor=request.user,
                           ip=request.META.get("REMOTE_ADDR"))
        return len(webhooks)

    @admin.action(description="Disable selected webhooks")
    def disable(self, request, queryset):
        self.message_user(request, f"Disabled {self._set_enabled(request, queryset, False)} webhook(s).",
                          messages.SUCCESS)

    @admin.action(description="Enable selected webhooks")
    def enable(self, request, queryset):
        self.message_user(request, f"Enabled {self._set_enabled(request, queryset, True)} webhook(s).",
                          messages.SUCCESS)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ("created_at", "event_type", "webhook", "status", "attempts", "last_status_code",
                    "next_attempt_at", "delivered_at")
    list_filter = ("status", "event_type", "created_at")
    search_fields = ("event_id", "webhook__url", "webhook__organization__slug")
    list_select_related = ("webhook",)
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
