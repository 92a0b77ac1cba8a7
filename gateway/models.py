"""The catalog: upstream providers and the public models routed to them."""

from django.db import models

from core.crypto import decrypt, encrypt


class Provider(models.Model):
    class Kind(models.TextChoices):
        OPENAI = "openai", "OpenAI-compatible"
        ANTHROPIC = "anthropic", "Anthropic"
        GEMINI = "gemini", "Gemini"
        FAL = "fal", "fal queue"
        FISH = "fish", "Fish Audio"

    name = models.SlugField(max_length=80, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.OPENAI)
    base_url = models.URLField(max_length=500, help_text="API root, e.g. https://api.openai.com/v1")
    api_key_encrypted = models.TextField(blank=True, editable=False)
    supports_responses = models.BooleanField(
        default=False, help_text="OpenAI-compatible providers that also serve /responses: Responses API calls "
                                 "are passed on natively instead of translated onto /chat/completions.")
    region = models.CharField(max_length=40, blank=True)
    enabled = models.BooleanField(default=True)
    connect_timeout = models.FloatField(null=True, blank=True, help_text="Seconds; empty = the default.")
    read_timeout = models.FloatField(null=True, blank=True,
                                     help_text="Seconds to wait for any byte (also the stream idle timeout).")
    # What `catalog_load` last wrote: a field differing from it was edited here, and the next load keeps it.
    catalog_state = models.JSONField(null=True, blank=True, editable=False)

    def __str__(self) -> str:
        return self.name

    @property
    def api_key(self) -> str:
        return decrypt(self.api_key_encrypted)

    @api_key.setter
    def api_key(self, value: str) -> None:
        self.api_key_encrypted = encrypt(value)


class CatalogModel(models.Model):
    """A public model id clients send, its prices and its ordered upstream targets."""

    class Capability(models.TextChoices):
        CHAT = "chat", "Chat"
        IMAGE = "image", "Image"
        VIDEO = "video", "Video"
        AUDIO = "audio", "Audio"
        GPU = "gpu", "GPU"

    public_id = models.CharField(max_length=120, unique=True)
    capability = models.CharField(max_length=16, choices=Capability.choices, default=Capability.CHAT)
    description = models.CharField(max_length=300, blank=True)
    intents = models.CharField(max_length=300, blank=True,
                               help_text="Comma-separated intent buckets, e.g. chat-fast. A request with "
                                         "`intent` gets the cheapest healthy model of the bucket.")
    class PriceUnit(models.TextChoices):
        TOKEN = "token", "Per million tokens"
        IMAGE = "image", "Per image"
        SECOND = "second", "Per second"
        CLIP = "clip", "Per clip"
        REQUEST = "request", "Per request"

    # Micro-credits (1 credit = 1,000,000 µcr; 100 credits = 1 USD).
    price_unit = models.CharField(max_length=16, choices=PriceUnit.choices, default=PriceUnit.TOKEN)
    input_price = models.BigIntegerField(default=0, help_text="Per million tokens.")
    cached_input_price = models.BigIntegerField(default=0, help_text="Per million tokens.")
    cache_write_price = models.BigIntegerField(default=0, help_text="Per million tokens.")
    output_price = models.BigIntegerField(default=0, help_text="Per million tokens.")
    unit_price = models.BigIntegerField(default=0, help_text="Per image, second, clip or request (price unit).")
    max_units = models.PositiveIntegerField(null=True, blank=True,
                                            help_text="The most units one call is billed, e.g. seconds of video.")
    parameters = models.JSONField(default=dict, blank=True,
                                  help_text='What the model accepts, e.g. {"durations": [4, 8, 12], '
                                            '"resolutions": ["720p"], "aspect_ratios": ["16:9", "9:16"]}.')
    context_window = models.PositiveIntegerField(null=True, blank=True,
                                                 help_text="Tokens of prompt and output together; shown in /models.")
    max_output_tokens = models.PositiveIntegerField(null=True, blank=True,
                                                    help_text="The most output tokens one call can have.")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    catalog_state = models.JSONField(null=True, blank=True, editable=False)  # as on Provider

    class Meta:
        db_table = "gateway_model"
        verbose_name = "model"
        ordering = ["public_id"]

    def __str__(self) -> str:
        return self.public_id


class ModelAlias(models.Model):
    """Another id (e.g. a legacy dated one) that resolves to a model."""

    model = models.ForeignKey(CatalogModel, on_delete=models.CASCADE, related_name="aliases")
    alias = models.CharField(max_length=120, unique=True)

    class Meta:
        verbose_name_plural = "model aliases"

    def __str__(self) -> str:
        return self.alias


class AliasRule(models.Model):
    """How an id that is neither a model nor an alias resolves: tried in ``position`` order, first match wins.

    ``target`` is a model id or alias; a regex rule's target may use the pattern's groups (``\\1``,
    ``\\g<name>``), so one rule maps every dated id to its family.
    """

    class Kind(models.TextChoices):
        EXACT = "exact", "Exact id"
        PREFIX = "prefix", "Id starting with"
        REGEX = "regex", "Regular expression (whole id)"

    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.EXACT)
    pattern = models.CharField(max_length=200)
    target = models.CharField(max_length=200, help_text="A model id or alias; regex rules may use \\1 or "
                                                        "\\g<name> for the pattern's groups.")
    position = models.PositiveIntegerField(default=0)
    enabled = models.BooleanField(default=True)
    description = models.CharField(max_length=300, blank=True)
    catalog_state = models.JSONField(null=True, blank=True, editable=False)  # as on Provider

    class Meta:
        ordering = ["position", "pk"]
        constraints = [models.UniqueConstraint(fields=["kind", "pattern"], name="alias_rule_unique")]

    def __str__(self) -> str:
        return f"{self.kind} {self.pattern} → {self.target}"


class FallbackTarget(models.Model):
    """One (provider, upstream model) of a model's chain, tried in ``position`` order."""

    model = models.ForeignKey(CatalogModel, on_delete=models.CASCADE, related_name="targets")
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="targets")
    upstream_model = models.CharField(max_length=200)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "pk"]
        constraints = [models.UniqueConstraint(fields=["model", "position"], name="target_position_unique")]

    def __str__(self) -> str:
        return f"{self.model} → {self.provider}/{self.upstream_model}"
