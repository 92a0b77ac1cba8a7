import re
import time
from datetime import UTC, datetime

from django import forms
from django.contrib import admin

from billing.money import micro_to_credits
from gateway.health import health_snapshot, target_cooldown_clear, target_cooldown_set
from gateway.models import AliasRule, CatalogModel, FallbackTarget, ModelAlias, Provider


class ProviderForm(forms.ModelForm):
    base_url = forms.URLField(max_length=500, assume_scheme="https",
                              help_text="API root, e.g. https://api.openai.com/v1")
    api_key = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                              help_text="Stored encrypted. Leave empty to keep the current key.")

    class Meta:
        model = Provider
        fields = ("name", "kind", "base_url", "api_key", "supports_responses", "region", "enabled", "connect_timeout",
                  "read_timeout")

    def save(self, commit=True):
        if new_key := self.cleaned_data.get("api_key"):
            self.instance.api_key = new_key
        return super().save(commit)


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderForm
    list_display = ("name", "kind", "base_url", "supports_responses", "region", "enabled", "has_key",
                    "connect_timeout", "read_timeout")
    list_filter = ("kind", "enabled", "supports_responses")
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
        (None, {"fields": ("public_id", "capability", "description", "intents", "enabled")}),
        ("Prices in micro-credits (1 credit = 1,000,000 µcr, 100 credits = 1 USD): per million tokens, or per "
         "unit for models priced per image, second, clip or request",
         {"fields": ("price_unit", "input_price", "cached_input_price", "cache_write_price", "output_price",
                     "unit_price", "max_units")}),
        ("What the model accepts", {"fields": ("parameters", "context_window", "max_output_tokens")}),
    )

    @admin.display(description="Input (credits/MTok)", ordering="input_price")
    def input_credits(self, obj):
        return micro_to_credits(obj.input_price)

    @admin.display(description="Output (credits/MTok)", ordering="output_price")
    def output_credits(self, obj):
        return micro_to_credits(obj.output_price)


GROUP_REFERENCE = re.compile(r"\\(\d+)|\\g<(\w+)>")  # \1 and \g<name> in a regex rule's target


def _missing_groups(pattern: re.Pattern, target: str) -> list[str]:
    groups = {str(n) for n in range(pattern.groups + 1)} | set(pattern.groupindex)
    return [ref for number, name in GROUP_REFERENCE.findall(target) if (ref := number or name) not in groups]


class AliasRuleForm(forms.ModelForm):
    class Meta:
        model = AliasRule
        fields = ("kind", "pattern", "target", "position", "enabled", "description")

    def clean(self):
        data = super().clean()
        kind, pattern, target = data.get("kind"), data.get("pattern"), data.get("target") or ""
        if kind == AliasRule.Kind.REGEX and pattern:
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                self.add_error("pattern", f"Not a regular expression: {exc}")
                return data
            if missing := _missing_groups(compiled, target):
                self.add_error("target", f"The pattern has no group {', '.join(missing)}.")
        elif target and not (CatalogModel.objects.filter(public_id=target).exists()
                             or ModelAlias.objects.filter(alias=target).exists()):
            self.add_error("target", "No model or alias has this id.")
        return data


@admin.register(AliasRule)
class AliasRuleAdmin(admin.ModelAdmin):
    """Rules for ids that are neither a model nor an alias; a catalog load keeps the edits made here."""

    form = AliasRuleForm
    list_display = ("position", "kind", "pattern", "target", "enabled", "description")
    list_display_links = ("pattern",)
    list_editable = ("position", "enabled")
    list_filter = ("kind", "enabled")
    search_fields = ("pattern", "target", "description")


@admin.register(FallbackTarget)
class FallbackTargetAdmin(admin.ModelAdmin):
    """Every target with its live health (from the shared cooldown state)."""

    list_display = ("model", "position", "provider", "upstream_model", "failures_in_a_row", "cooling_until")
    list_filter = ("provider",)
    search_fields = ("model__public_id", "upstream_model", "provider__name")
    list_select_related = ("model", "provider")
    actions = ("cool_down", "clear_cooldown")

    @staticmethod
    def _tid(obj) -> str:
        return f"{obj.provider.name}/{obj.upstream_model}"

    def _health(self, obj) -> tuple[int, float]:
        return health_snapshot([self._tid(obj)])[self._tid(obj)]

    @admin.action(description="Take out of traffic for 10 minutes")
    def cool_down(self, request, queryset):
        for obj in queryset.select_related("provider"):
            target_cooldown_set(self._tid(obj), 600)

    @admin.action(description="Clear cooldown and failures")
    def clear_cooldown(self, request, queryset):
        for obj in queryset.select_related("provider"):
            target_cooldown_clear(self._tid(obj))

    @admin.display(description="Failures in a row")
    def failures_in_a_row(self, obj):
        return self._health(obj)[0]

    @admin.display(description="Cooling down until")
    def cooling_until(self, obj):
        until = self._health(obj)[1]
        return datetime.fromtimestamp(until, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if until > time.time() \
            else "healthy"
