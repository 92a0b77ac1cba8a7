from django.contrib import admin

from billing.models import Hold, LedgerEntry, PaymentEvent, Wallet
from billing.money import micro_to_credits


@admin.register(Wallet)
class WalletAdmin(admin.ModelAdmin):
    list_display = ("organization", "balance_credits", "updated_at")
    search_fields = ("organization__slug", "organization__name")
    readonly_fields = ("organization", "balance", "updated_at")  # money moves only through the ledger

    @admin.display(description="Balance (credits)", ordering="balance")
    def balance_credits(self, obj):
        return micro_to_credits(obj.balance)

    def has_add_permission(self, request):
        return False


@admin.register(LedgerEntry)
class LedgerEntryAdmin(admin.ModelAdmin):
    list_display = ("created_at", "wallet", "kind", "amount_credits", "balance_after_credits", "reference")
    list_filter = ("kind", "created_at")
    search_fields = ("idempotency_key", "reference", "wallet__organization__slug")
    date_hierarchy = "created_at"

    @admin.display(description="Amount (credits)", ordering="amount")
    def amount_credits(self, obj):
        return micro_to_credits(obj.amount)

    @admin.display(description="Balance after (credits)")
    def balance_after_credits(self, obj):
        return micro_to_credits(obj.balance_after)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Hold)
class HoldAdmin(admin.ModelAdmin):
    list_display = ("pk", "wallet", "status", "amount_credits", "settled_credits", "expires_at", "created_at")
    list_filter = ("status", "created_at")
    search_fields = ("idempotency_key", "reference", "wallet__organization__slug")
    readonly_fields = [f.name for f in Hold._meta.fields]

    @admin.display(description="Amount (credits)", ordering="amount")
    def amount_credits(self, obj):
        return micro_to_credits(obj.amount)

    @admin.display(description="Settled (credits)")
    def settled_credits(self, obj):
        return None if obj.settled_amount is None else micro_to_credits(obj.settled_amount)

    def has_add_permission(self, request):
        return False


@admin.register(PaymentEvent)
class PaymentEventAdmin(admin.ModelAdmin):
    list_display = ("received_at", "provider", "type", "event_id", "organization", "amount_credits")
    list_filter = ("provider", "type")
    search_fields = ("event_id", "organization__slug")
    readonly_fields = [f.name for f in PaymentEvent._meta.fields]

    @admin.display(description="Amount (credits)", ordering="amount")
    def amount_credits(self, obj):
        return micro_to_credits(obj.amount)

    def has_add_permission(self, request):
        return False
