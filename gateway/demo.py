"""The demo catalog: realistic prices, served by the simulator so everything works offline."""

from django.conf import settings

from gateway.models import CatalogModel, Provider
from gateway.services import model_upsert, provider_upsert

CHAT = CatalogModel.Capability.CHAT
# Credits per million tokens (100 credits = 1 USD), and the intent buckets each model serves.
DEMO_CHAT_MODELS = {
    "gpt-5.5": ({"input": "125", "cached_input": "12.5", "output": "1000"}, ()),
    "gpt-5.4-mini": ({"input": "25", "cached_input": "2.5", "output": "200"}, ("chat-fast",)),
    "deepseek-v4-flash": ({"input": "7", "cached_input": "0.7", "output": "28"}, ("chat-fast",)),
}
# Models of the other wire formats: (provider, prices, legacy aliases).
DEMO_FORMAT_MODELS = {
    "claude-sonnet-4-6": ("simulator-anthropic", {"input": "300", "cached_input": "30", "cache_write": "375",
                                                  "output": "1500"},
                          ("claude-sonnet-4-5-20250929", "claude-3-5-sonnet-20241022")),
    "claude-haiku-4-5": ("simulator-anthropic", {"input": "100", "cached_input": "10", "cache_write": "125",
                                                 "output": "500"}, ("claude-3-5-haiku-20241022",)),
    "gemini-3.5-flash": ("simulator-gemini", {"input": "30", "cached_input": "3", "output": "250"}, ()),
    "gpt-5.3-codex": ("simulator-openai-responses", {"input": "175", "cached_input": "17.5", "output": "1400"}, ()),
}


def demo_catalog_install(*, simulator_url: str | None = None) -> list[CatalogModel]:
    base = (simulator_url or settings.HYPEREAL["SIMULATOR_URL"]).rstrip("/")
    sim = provider_upsert(name="simulator-openai", kind=Provider.Kind.OPENAI, base_url=f"{base}/v1",
                          api_key="sim-local-key")
    # A provider whose every answer is a 500: `sim-flaky` falls back from it to the healthy one.
    broken = provider_upsert(name="simulator-broken", kind=Provider.Kind.OPENAI,
                             base_url=f"{base}/x/fail=500/v1", api_key="sim-local-key")
    providers = {
        "simulator-anthropic": provider_upsert(name="simulator-anthropic", kind=Provider.Kind.ANTHROPIC,
                                               base_url=f"{base}/v1", api_key="sim-local-key"),
        "simulator-gemini": provider_upsert(name="simulator-gemini", kind=Provider.Kind.GEMINI,
                                            base_url=f"{base}/v1beta", api_key="sim-local-key"),
        "simulator-openai-responses": provider_upsert(name="simulator-openai-responses", kind=Provider.Kind.OPENAI,
                                                      base_url=f"{base}/v1", api_key="sim-local-key",
                                                      supports_responses=True),
    }
    models = [
        model_upsert(public_id=model_id, capability=CHAT, prices_per_mtok=prices, targets=[(sim, model_id)],
                     intents=intents, description="Demo model served by the simulator.")
        for model_id, (prices, intents) in DEMO_CHAT_MODELS.items()
    ]
    models += [
        model_upsert(public_id=model_id, capability=CHAT, prices_per_mtok=prices, aliases=aliases,
                     targets=[(providers[provider], model_id)], description="Demo model served by the simulator.")
        for model_id, (provider, prices, aliases) in DEMO_FORMAT_MODELS.items()
    ]
    models.append(model_upsert(
        public_id="sim-flaky", capability=CHAT, prices_per_mtok={"input": "10", "output": "40"},
        targets=[(broken, "sim-flaky-primary"), (sim, "sim-flaky-backup")],
        description="Demo of fallback: the first target always answers 500, the second succeeds."))
    return models
