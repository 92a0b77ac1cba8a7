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
    models += _video_models_install(base=base, openai=sim)
    models += _media_models_install(base=base, openai=sim, gemini=providers["simulator-gemini"], broken=broken)
    return models


# Video models (per second or per clip, in credits; list prices where published, else estimates), served by
# the simulator's OpenAI videos API and fal queue: (provider, upstream model, unit, price, parameters, intents).
VIDEO_SECONDS = CatalogModel.PriceUnit.SECOND
DEMO_VIDEO_MODELS = {
    "sora-2": ("openai", "sora-2", VIDEO_SECONDS, "10",
               {"durations": [4, 8, 12], "aspect_ratios": ["16:9", "9:16"], "resolutions": ["720p"]}, ()),
    "kling-v3": ("fal", "fal-ai/kling-video/v3/text-to-video", VIDEO_SECONDS, "7",
                 {"durations": [5, 10], "aspect_ratios": ["16:9", "9:16", "1:1"], "resolutions": ["720p"]},
                 ("text-to-video-fast",)),
    "gemini_omni_flash": ("fal", "fal-ai/omni-flash/text-to-video", VIDEO_SECONDS, "8",
                          {"durations": [4, 6, 8], "aspect_ratios": ["16:9", "9:16"], "resolutions": ["720p"]},
                          ("text-to-video-fast",)),
    "veo3.1-fast": ("fal", "fal-ai/veo3.1/fast", CatalogModel.PriceUnit.CLIP, "120",
                    {"durations": [8], "aspect_ratios": ["16:9", "9:16"], "resolutions": ["720p", "1080p"]}, ()),
}


def _video_models_install(*, base: str, openai: Provider) -> list[CatalogModel]:
    providers = {"openai": openai, "fal": provider_upsert(name="simulator-fal", kind=Provider.Kind.FAL,
                                                          base_url=f"{base}/fal", api_key="sim-local-key")}
    return [
        model_upsert(public_id=model_id, capability=CatalogModel.Capability.VIDEO, price_unit=unit, unit_price=price,
                     max_units=max(parameters["durations"]) if unit == VIDEO_SECONDS else None,
                     parameters=parameters, intents=intents, targets=[(providers[provider], upstream_model)],
                     description="Demo video model served by the simulator.")
        for model_id, (provider, upstream_model, unit, price, parameters, intents) in DEMO_VIDEO_MODELS.items()
    ]


# --- Images and audio (gpu.media) ---------------------------------------------------------------------------
# Credits per image or per request. List prices where the provider publishes one: Gemini 2.5 Flash Image $0.039
# an image; Gemini 3.1 Flash Image $0.045 / 0.067 / 0.101 / 0.151 at 0.5K / 1K / 2K / 4K. Estimates elsewhere:
# gpt-image-2 5 / 10 / 20 by size tier (near gpt-image-1's medium quality), and a flat price per audio request
# (Fish Audio bills $15 per million characters spoken, so 2,000 characters cost it up to 3 credits, and $0.36 an
# hour transcribed; OpenAI's gpt-4o-mini-tts about $0.015 a minute of speech, whisper-1 $0.006 a minute).
IMAGE, PER_IMAGE = CatalogModel.Capability.IMAGE, CatalogModel.PriceUnit.IMAGE
AUDIO, PER_REQUEST = CatalogModel.Capability.AUDIO, CatalogModel.PriceUnit.REQUEST
GEMINI_RATIOS = ["1:1", "3:2", "2:3", "4:3", "3:4", "16:9", "9:16", "21:9"]
GEMINI_REFERENCES = {"field": "image_urls", "max": 4, "sources": ["https", "data", "file"]}
FISH_FORMATS = ["mp3", "wav", "opus", "pcm"]
# public id → (targets as (provider, upstream model), capability, unit, price, parameters, intents, aliases)
DEMO_MEDIA_MODELS = {
    "gpt-image-2": ([("openai", "gpt-image-2")], IMAGE, PER_IMAGE, "5", {
        "sizes": {"1024x1024": "5", "1536x1024": "5", "1024x1536": "5", "2048x2048": "10", "4096x4096": "20"},
        "references": {"field": "reference_images", "max": 4, "sources": ["https"]}, "mask": True,
        "options": ["quality", "background", "output_format", "output_compression", "moderation"],
        "response_format": "b64_json"}, ("text-to-image", "image-to-image"), ()),
    "gemini-3-1-flash-t2i": ([("gemini", "gemini-3.1-flash-image-preview")], IMAGE, PER_IMAGE, "6.7", {
        "aspect_ratios": GEMINI_RATIOS, "resolutions": {"0.5K": "4.5", "1K": "6.7", "2K": "10.1", "4K": "15.1"},
        "default_resolution": "1K", "references": GEMINI_REFERENCES, "response_format": "url"},
        ("text-to-image", "text-to-image-fast", "image-to-image"), ("nano_banana_2",)),
    "nano_banana": ([("gemini", "gemini-2.5-flash-image")], IMAGE, PER_IMAGE, "3.9", {
        "aspect_ratios": [*GEMINI_RATIOS, "4:5", "5:4"], "references": {**GEMINI_REFERENCES, "max": 3},
        "response_format": "url"}, ("text-to-image", "text-to-image-fast", "image-to-image"), ()),
    # Fallback: its first target always answers 500, the second succeeds.
    "sim-flaky-image": ([("broken", "gpt-image-1"), ("openai", "gpt-image-1")], IMAGE, PER_IMAGE, "1", {
        "sizes": ["1024x1024", "1536x1024", "1024x1536"], "response_format": "b64_json"}, (), ()),
    "audio-tts": ([("fish", "s2-pro")], AUDIO, PER_REQUEST, "4", {
        "task": "tts", "formats": FISH_FORMATS, "max_characters": 2000}, ("text-to-speech",), ()),
    "audio-clone": ([("fish", "s2-pro")], AUDIO, PER_REQUEST, "6", {
        "task": "clone", "formats": FISH_FORMATS, "max_characters": 2000, "min_reference_seconds": 10},
        ("voice-clone",), ()),
    "audio-asr": ([("fish", "asr")], AUDIO, PER_REQUEST, "3", {"task": "asr"}, ("speech-to-text",), ()),
    "gpt-4o-mini-tts": ([("openai", "gpt-4o-mini-tts")], AUDIO, PER_REQUEST, "2", {
        "task": "tts", "formats": ["mp3", "opus", "aac", "flac", "wav", "pcm"], "max_characters": 1000,
        "options": ["instructions"]}, ("text-to-speech",), ()),
    "whisper-1": ([("openai", "whisper-1")], AUDIO, PER_REQUEST, "2", {"task": "asr"}, ("speech-to-text",), ()),
}


def _media_models_install(*, base: str, openai: Provider, gemini: Provider, broken: Provider) -> list[CatalogModel]:
    providers = {"openai": openai, "gemini": gemini, "broken": broken,
                 "fish": provider_upsert(name="simulator-fish", kind=Provider.Kind.FISH, base_url=f"{base}/fish",
                                         api_key="sim-local-key")}
    return [
        model_upsert(public_id=model_id, capability=capability, price_unit=unit, unit_price=price,
                     parameters=parameters, intents=intents, aliases=aliases,
                     targets=[(providers[provider], upstream_model) for provider, upstream_model in targets],
                     description="Demo media model served by the simulator.")
        for model_id, (targets, capability, unit, price, parameters, intents, aliases) in DEMO_MEDIA_MODELS.items()
    ]
