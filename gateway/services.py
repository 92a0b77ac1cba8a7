from django.db import transaction

from billing.money import credits_to_micro
from gateway.models import CatalogModel, FallbackTarget, ModelAlias, Provider


@transaction.atomic
def provider_upsert(*, name: str, kind: str, base_url: str, api_key: str = "", region: str = "",
                    supports_responses: bool = False) -> Provider:
    provider = Provider.objects.filter(name=name).first() or Provider(name=name)
    provider.kind, provider.base_url, provider.region, provider.enabled = kind, base_url, region, True
    provider.supports_responses = supports_responses
    if api_key:
        provider.api_key = api_key
    provider.save()
    return provider


@transaction.atomic
def model_upsert(*, public_id: str, capability: str, targets: list[tuple[Provider, str]],
                 prices_per_mtok: dict[str, str] | None = None, price_unit: str = CatalogModel.PriceUnit.TOKEN,
                 unit_price: str = "0", max_units: int | None = None, parameters: dict | None = None,
                 aliases: tuple[str, ...] = (), intents: tuple[str, ...] = (), description: str = "") -> CatalogModel:
    """Create or replace a model. Prices are decimal credit strings (never floats): ``prices_per_mtok`` for
    token-priced models, ``unit_price`` per ``price_unit`` (image, second, clip, request) for the others."""
    model = CatalogModel.objects.filter(public_id=public_id).first() or CatalogModel(public_id=public_id)
    model.capability, model.description, model.enabled = capability, description, True
    model.intents = ",".join(intents)
    for field in ("input", "cached_input", "cache_write", "output"):
        setattr(model, f"{field}_price", credits_to_micro((prices_per_mtok or {}).get(field, "0")))
    model.price_unit, model.unit_price, model.max_units = price_unit, credits_to_micro(unit_price), max_units
    model.parameters = parameters or {}
    model.save()
    model.targets.all().delete()
    FallbackTarget.objects.bulk_create(
        FallbackTarget(model=model, provider=provider, upstream_model=upstream_model, position=i)
        for i, (provider, upstream_model) in enumerate(targets)
    )
    model.aliases.exclude(alias__in=aliases).delete()
    for alias in aliases:
        ModelAlias.objects.update_or_create(alias=alias, defaults={"model": model})
    return model
