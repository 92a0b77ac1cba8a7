"""What the gateway's catalog snapshot holds: what an operator enabled, in chain order, with usable keys."""

import pytest
from django.conf import settings

from billing.money import credits_to_micro
from billing.pricing import UnitPrice
from gateway.catalog import catalog_load
from gateway.models import CatalogModel, Provider
from gateway.services import model_upsert, provider_upsert

pytestmark = pytest.mark.django_db


def test_the_snapshot_holds_enabled_models_with_their_enabled_targets_in_chain_order():
    first = provider_upsert(name="snap-first", kind="anthropic", base_url="https://first.test/v1/",
                            api_key="k-1")
    second = provider_upsert(name="snap-second", kind="openai", base_url="https://second.test/v1",
                             api_key="k-2")
    Provider.objects.filter(pk=second.pk).update(connect_timeout=2.5, read_timeout=40)
    off = provider_upsert(name="snap-off", kind="openai", base_url="https://off.test/v1", api_key="k-3")
    Provider.objects.filter(pk=off.pk).update(enabled=False)
    model_upsert(public_id="snap-chat", capability="chat",
                 targets=[(second, "up-2"), (off, "up-3"), (first, "up-1")],
                 prices_per_mtok={"input": "1", "output": "4"}, aliases=("snap-old", "snap-older"),
                 intents=("snap-fast",))
    model_upsert(public_id="snap-image", capability="image", targets=[(first, "img")],
                 price_unit=CatalogModel.PriceUnit.IMAGE, unit_price="0.04", max_units=4)
    model_upsert(public_id="snap-unservable", capability="chat", targets=[(off, "up")],
                 aliases=("snap-gone",))
    model_upsert(public_id="snap-disabled", capability="chat", targets=[(first, "up")],
                 aliases=("snap-hidden",))
    CatalogModel.objects.filter(public_id="snap-disabled").update(enabled=False)

    catalog = catalog_load()

    chat = catalog.by_name["snap-chat"]
    assert [(t.provider, t.upstream_model, t.api_key) for t in chat.targets] == [
        ("snap-second", "up-2", "k-2"), ("snap-first", "up-1", "k-1")]
    assert chat.targets[0].connect_timeout == 2.5 and chat.targets[0].read_timeout == 40
    assert chat.targets[1].base_url == "https://first.test/v1" and chat.targets[1].kind == "anthropic"
    assert (chat.targets[1].connect_timeout, chat.targets[1].read_timeout) == (
        settings.HYPEREAL["UPSTREAM_CONNECT_TIMEOUT"], settings.HYPEREAL["UPSTREAM_READ_TIMEOUT"])
    assert chat.aliases == ("snap-old", "snap-older") and catalog.by_name["snap-old"] is chat
    assert chat.prices.output == credits_to_micro("4") and chat.unit_price is None
    assert chat in catalog.by_intent["snap-fast"]
    assert catalog.by_name["snap-image"].unit_price == UnitPrice(credits_to_micro("0.04"), 4)
    listed = [r.public_id for r in catalog.routes]
    assert listed == sorted(listed)
    for hidden in ("snap-unservable", "snap-gone", "snap-disabled", "snap-hidden"):
        assert hidden not in catalog.by_name
