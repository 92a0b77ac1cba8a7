from django.contrib import admin

from billing.money import micro_to_credits
from usage.models import RequestLog


@admin.register(RequestLog)
class RequestLogAdmin(admin.ModelAdmin):
    list_display = ("created_at", "request_id", "organization", "endpoint", "model", "status", "latency_ms",
                    "input_tokens", "output_tokens", "cost_credits", "stream")
    list_filter = ("status", "endpoint", "stream", "created_at")
    search_fields = ("request_id", "model", "organization__slug", "api_key__name", "api_key__last4")
    date_hierarchy = "created_at"
    list_select_related = ("organization",)
    show_full_result_count = False  # counting millions of rows on every page view is slow

    @admin.display(description="Cost (credits)", ordering="cost")
    def cost_credits(self, obj):
        return micro_to_credits(obj.cost)

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]  # logs are evidence, not editable

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
