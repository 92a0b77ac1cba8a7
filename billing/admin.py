from django.contrib import admin

from billing.models import LedgerEntry, Wallet
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
