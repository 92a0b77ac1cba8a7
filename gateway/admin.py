from django import forms
from django.contrib import admin

from billing.money import micro_to_credits
from gateway.models import CatalogModel, FallbackTarget, ModelAlias, Provider


class ProviderForm(forms.ModelForm):
    base_url = forms.URLField(max_length=500, assume_scheme="https",
                              help_text="API root, e.g. https://api.openai.com/v1")
    api_key = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                              help_text="Stored encrypted. Leave empty to keep the current key.")

    class Meta:
        model = Provider
        fields = ("name", "kind", "base_url", "api_key", "region", "enabled")

    def save(self, commit=True):
        if new_key := self.cleaned_data.get("api_key"):
            self.instance.api_key = new_key
        return super().save(commit)


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderForm
    list_display = ("name", "kind", "base_url", "region", "enabled", "has_key")
    list_filter = ("kind", "enabled")
    search_fields = ("name", "base_url")

    @admin.display(boolean=True, description="API key set")
    def has_key(self, obj):
        return bool(obj.api_key_encrypted)


class AliasInline(admin.TabularInline):
    model = ModelAlias
    extra = 0


class TargetInline(admin.TabularInline):
    model = FallbackTarget
    extra = 0
    ordering = ("position",)


@admin.register(CatalogModel)
class CatalogModelAdmin(admin.ModelAdmin):
    list_display = ("public_id", "capability", "input_credits", "output_credits", "enabled")
    list_filter = ("capability", "enabled")
    search_fields = ("public_id", "aliases__alias", "description")
    inlines = [AliasInline, TargetInline]
    fieldsets = (
        (None, {"fields": ("public_id", "capability", "description", "enabled")}),
        ("Prices (micro-credits per million tokens; 1 credit = 1,000,000 µcr, 100 credits = 1 USD)",
         {"fields": ("input_price", "cached_input_price", "cache_write_price", "output_price")}),
    )

    @admin.display(description="Input (credits/MTok)", ordering="input_price")
    def input_credits(self, obj):
        return micro_to_credits(obj.input_price)

    @admin.display(description="Output (credits/MTok)", ordering="output_price")
    def output_credits(self, obj):
        return micro_to_credits(obj.output_price)
