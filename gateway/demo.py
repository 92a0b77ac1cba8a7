"""The demo catalog: realistic prices, served by the simulator so everything works offline."""

from django.conf import settings

from gateway.models import CatalogModel, Provider
from gateway.services import model_upsert, provider_upsert

# Credits per million tokens (100 credits = 1 USD).
DEMO_CHAT_MODELS = {
    "gpt-5.5": {"input": "125", "cached_input": "12.5", "output": "1000"},
    "gpt-5.4-mini": {"input": "25", "cached_input": "2.5", "output": "200"},
    "deepseek-v4-flash": {"input": "7", "cached_input": "0.7", "output": "28"},
}


def demo_catalog_install(*, simulator_url: str | None = None) -> list[CatalogModel]:
    base = (simulator_url or settings.HYPEREAL["SIMULATOR_URL"]).rstrip("/")
    openai_sim = provider_upsert(name="simulator-openai", kind=Provider.Kind.OPENAI, base_url=f"{base}/v1",
                                 api_key="sim-local-key")
    return [
        model_upsert(public_id=model_id, capability=CatalogModel.Capability.CHAT, prices_per_mtok=prices,
                     targets=[(openai_sim, model_id)], description="Demo model served by the simulator.")
        for model_id, prices in DEMO_CHAT_MODELS.items()
    ]
