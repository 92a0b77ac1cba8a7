"""The catalog file: it names every model the reference and the clients use, loads idempotently, keeps what
operators edit in admin, and points the same models at real providers or at the simulator."""

import io
import textwrap
from pathlib import Path

import pytest
from django.core.management import call_command

from billing.money import MICRO
from gateway.catalog import catalog_load
from gateway.catalog_file import CatalogFileError, catalog_file_apply, catalog_file_read
from gateway.errors import GatewayError
from gateway.models import AliasRule, CatalogModel, Provider

SIM = "http://127.0.0.1:9"

# Every model id the API reference (shared/reference/seeds/004) names, by capability.
REFERENCE_IDS = {
    "chat": """gpt-5.5 gpt-5.5-instant gpt-5.5-pro gpt-5.4 gpt-5.4-mini deepseek-v4-pro deepseek-v4-flash
        deepseek-v3.2 kimi-k2.6 kimi-k2.5 glm-5.1 glm-5 qwen3-max qwen3.5-plus qwen3.5-flash MiniMax-M2.5
        claude-opus-4-7 claude-opus-4-6 claude-sonnet-4-6 claude-haiku-4-5 managed-claude-opus-4-7-max
        managed-claude-opus-4-6-max managed-claude-opus-4-5-max managed-claude-sonnet-4-6-max
        managed-claude-sonnet-4-5-max managed-claude-haiku-4-5-max claude-sonnet-4-5-20250929
        claude-3-5-sonnet-20241022 claude-3-5-haiku-20241022 gpt-5.3-codex gpt-5.3-codex-spark gpt-5.1-codex
        gemini-3.5-thinking gemini-3.5-fast gemini-3.1-pro-preview gemini-3-pro-preview gemini-3-flash-preview""",
    "image": """gpt-image-2 gpt-4o-image nano_banana nano_banana_2 gemini-3.1-flash-image-preview
        gemini-2.5-flash-image-preview flux-kontext-pro flux-2-pro doubao-seedream-4-0 doubao-seedream-4-5
        doubao-seedream-5-0 gemini-3.1-flash-image-preview-official flux-kontext-max gemini-2.5-flash-image-official
        nano_banana_pro gemini-3-pro-image-preview flux-2-flex gemini-3-pro-image-preview-official
        gemini-3-pro-image-preview-4K gemini-3.1-fast-imagen gemini-3.1-thinking-imagen gemini-3-1-flash-t2i
        nano-banana-t2i""",
    "video": """happyhorse-1.0 gemini_omni_flash wan2.6-flash kling-2-6 MiniMax-Hailuo-02
        doubao-seedance-1-0-pro-fast MiniMax-Hailuo-2.3 wan2.6 kling-video-o1 kling-v3-omni kling-v3 kling-v3-video
        doubao-seedance-1-0-pro-quality doubao-seedance-2-0 doubao-seedance-2-0-fast doubao-seedance-1-5-pro
        Veo3.1-fast-official Veo3.1-quality-official veo3.1-fast veo3.1-quality vidu-q3-pro grok-video-3""",
    "audio": "audio-tts audio-clone audio-asr",
}
# What the pinned clients send with their default settings (and the ids the issue saw earlier versions send).
CLIENT_DEFAULTS = {
    "claude-opus-5-5": "claude-opus-5-5", "claude-sonnet-5-5": "claude-sonnet-5-5",  # Claude Code 2.1.332
    "claude-haiku-5-5": "claude-haiku-5-5",
    "claude-opus-4-8": "claude-opus-4-8", "claude-sonnet-5": "claude-sonnet-5",  # earlier Claude Code 2.1
    "claude-haiku-4-5-20251001": "claude-haiku-4-5",
    "gemini-3.1-pro-preview": "gemini-3.1-pro-preview", "gemini-3.5-flash-lite": "gemini-3.5-flash-lite",
    "gemini-3.8-flash": "gemini-3.8-flash",  # Gemini CLI 0.61: default, router, and its `flash`
    "gpt-6.2-sol": "gpt-6.2-sol", "gpt-5.6-luna": "gpt-5.6-luna",  # Codex CLI 0.171, openai-agents 0.24
    "gpt-4o-mini": "gpt-4o-mini",  # llm
}


@pytest.fixture
def shipped():
    return catalog_file_read()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(textwrap.dedent(text))
    return path


SMALL = """
    version: 1
    providers:
      acme: {kind: openai, base_url: https://api.acme.test/v1, api_key_env: ACME_KEY, simulator: /v1}
    alias_rules:
      - {regex: '(.+)-\\d{8}', target: '\\1'}
    models:
      acme-large:
        prices: {input: 1.25, cached_input: 0.125, output: 10}
        context_window: 400000
        max_output_tokens: 128000
        aliases: [acme-l]
        targets: [acme/large-2026]
      acme-small:
        prices: {input: 0.5, output: 2}
        targets: [acme/small]
"""


@pytest.mark.no_services
def test_the_shipped_file_reads_and_prices_chat_models_per_million_tokens(shipped):
    gpt = shipped.models["gpt-5.5"]
    assert gpt.prices == {"input": 500 * MICRO, "cached_input": 50 * MICRO, "cache_write": 0,
                          "output": 3000 * MICRO}
    assert (gpt.context_window, gpt.max_output_tokens) == (1_050_000, 128_000)
    assert shipped.models["deepseek-v4-pro"].prices["cached_input"] == 362_500  # 0.3625 credits, exactly
    veo = shipped.models["veo3.1-fast"]
    assert (veo.price_unit, veo.unit_price) == ("clip", 120 * MICRO)
    chat = [m for m in shipped.models.values() if m.capability == "chat" and not m.demo]
    assert all(m.context_window and m.prices["input"] and m.prices["output"] for m in chat)


@pytest.mark.django_db
def test_every_id_of_the_reference_and_of_the_clients_defaults_is_served(shipped):
    catalog_file_apply(shipped, simulator_url=SIM)
    catalog = catalog_load()
    for capability, ids in REFERENCE_IDS.items():
        for model_id in ids.split():
            assert catalog.resolve(model_id, capability=capability).capability == capability, model_id
    for sent, served in CLIENT_DEFAULTS.items():
        assert catalog.resolve(sent, capability="chat").public_id == served


@pytest.mark.django_db
def test_the_demo_serves_every_model_from_the_simulator_and_production_from_the_providers(shipped):
    catalog_file_apply(shipped, simulator_url=SIM)
    demo = [r for r in catalog_load().routes if r.public_id in shipped.models]  # the suite adds models of its own
    assert len(demo) == len(shipped.models)
    assert all(t.provider.startswith("simulator-") and t.base_url.startswith(SIM) for r in demo for t in r.targets)
    catalog_file_apply(shipped, environ={"ANTHROPIC_API_KEY": "sk-ant-test"})
    live = catalog_load()  # only the providers with a key serve
    assert {t.provider for r in live.routes if r.public_id in shipped.models for t in r.targets} == {"anthropic"}
    claude = live.resolve("claude-sonnet-4-6", capability="chat")
    target = claude.targets[0]
    assert (target.base_url, target.api_key) == ("https://api.anthropic.com/v1", "sk-ant-test")
    assert not CatalogModel.objects.get(public_id="sim-flaky").enabled  # demo models stay on the simulator


@pytest.mark.django_db
def test_loading_is_idempotent_and_reports_what_changed(tmp_path):
    path = write(tmp_path, SMALL)
    first = catalog_file_apply(catalog_file_read(path), environ={"ACME_KEY": "k"})
    assert [str(c) for c in first if c.subject == "model acme-large"] == [
        "+ model acme-large: chat, 1.25 / 10 credits per million tokens in / out"]
    assert catalog_file_apply(catalog_file_read(path), environ={"ACME_KEY": "k"}) == []
    write(tmp_path, SMALL.replace("output: 10}", "output: 12}"))
    assert [str(c) for c in catalog_file_apply(catalog_file_read(path), environ={"ACME_KEY": "k"})] == [
        "~ model acme-large: output_price 10 → 12"]


@pytest.mark.django_db
def test_an_edit_in_admin_is_kept_and_reported_until_forced(tmp_path):
    path = write(tmp_path, SMALL)
    catalog_file_apply(catalog_file_read(path), environ={"ACME_KEY": "k"})
    CatalogModel.objects.filter(public_id="acme-large").update(input_price=2 * MICRO)
    write(tmp_path, SMALL.replace("output: 10}", "output: 12}"))
    changes = [str(c) for c in catalog_file_apply(catalog_file_read(path), environ={"ACME_KEY": "k"})]
    assert changes == ["! model acme-large: input_price 2 was edited in admin (the file says 1.25; --force takes "
                       "the file's)", "~ model acme-large: output_price 10 → 12"]
    model = CatalogModel.objects.get(public_id="acme-large")
    assert (model.input_price, model.output_price) == (2 * MICRO, 12 * MICRO)
    assert catalog_file_apply(catalog_file_read(path), environ={"ACME_KEY": "k"})[0].action == "kept"
    catalog_file_apply(catalog_file_read(path), environ={"ACME_KEY": "k"}, force=True)
    assert CatalogModel.objects.get(public_id="acme-large").input_price == 1_250_000


@pytest.mark.django_db
def test_a_model_dropped_from_the_file_is_disabled_not_deleted(tmp_path):
    path = write(tmp_path, SMALL)
    catalog_file_apply(catalog_file_read(path), environ={"ACME_KEY": "k"})
    write(tmp_path, SMALL[:SMALL.index("      acme-small:")])
    changes = catalog_file_apply(catalog_file_read(path), environ={"ACME_KEY": "k"})
    assert "- model acme-small: no longer in the catalog file" in [str(c) for c in changes]
    assert not CatalogModel.objects.get(public_id="acme-small").enabled


@pytest.mark.django_db
def test_a_provider_without_its_key_is_loaded_disabled_and_the_key_is_never_shown(tmp_path):
    path = write(tmp_path, SMALL)
    changes = catalog_file_apply(catalog_file_read(path), environ={})
    added = "+ provider acme: openai, https://api.acme.test/v1, disabled until $ACME_KEY is set"
    assert added in map(str, changes)
    assert not Provider.objects.get(name="acme").enabled
    changes = catalog_file_apply(catalog_file_read(path), environ={"ACME_KEY": "sk-secret-acme"})
    assert [str(c) for c in changes] == ["~ provider acme: enabled False → True",
                                         "~ provider acme: key from $ACME_KEY"]
    assert Provider.objects.get(name="acme").api_key == "sk-secret-acme"


@pytest.mark.django_db
def test_the_command_shows_the_diff_and_a_dry_run_writes_nothing(tmp_path, monkeypatch):
    path = write(tmp_path, SMALL)
    monkeypatch.setenv("ACME_KEY", "k")
    out, err = io.StringIO(), io.StringIO()
    call_command("catalog_load", "--file", str(path), "--dry-run", stdout=out, stderr=err)
    assert "+ model acme-small" in out.getvalue() and "dry run: nothing written" in err.getvalue()
    assert not CatalogModel.objects.filter(public_id="acme-small").exists()
    call_command("catalog_load", "--file", str(path), stdout=out, stderr=err)
    assert CatalogModel.objects.get(public_id="acme-large").aliases.get().alias == "acme-l"
    assert AliasRule.objects.get(kind="regex", pattern="(.+)-\\d{8}").target == "\\1"
    catalog = catalog_load()
    assert catalog.resolve("acme-large-20260101", capability="chat").public_id == "acme-large"


@pytest.mark.no_services
@pytest.mark.parametrize(("change", "message"), [
    (("prices: {input: 0.5, output: 2}", "prices: {input: 0.5}"), "models.acme-small.prices: input and output"),
    (("targets: [acme/small]", "targets: [nowhere/small]"), "models.acme-small.targets: `nowhere/small`"),
    (("targets: [acme/small]", "targets: [acme/small]\n        colour: blue"), "unknown field(s) colour"),
    (("aliases: [acme-l]", "aliases: [acme-small]"), "`acme-small` is already acme-small"),
    (("{regex: '(.+)-\\d{8}', target: '\\1'}", "{exact: acme-old, target: acme-tiny}"),
     "target `acme-tiny` is no model"),
    (("regex: '(.+)-\\d{8}'", "exact: acme-old"), "target `\\1` is no model"),
    (("prices: {input: 0.5,", "prices: {input: 0.0000001,"), "credits as a decimal number"),
])
def test_mistakes_in_the_file_are_named_where_they_are(tmp_path, change, message):
    with pytest.raises(CatalogFileError) as exc:
        catalog_file_read(write(tmp_path, SMALL.replace(*change)))
    assert message in str(exc.value)


@pytest.mark.django_db
def test_an_unknown_model_is_answered_with_the_closest_ids(shipped):
    catalog_file_apply(shipped, simulator_url=SIM)
    catalog = catalog_load()
    with pytest.raises(GatewayError) as exc:
        catalog.resolve("gemini-3.5-flsh", capability="chat")
    assert exc.value.extra["suggestions"][0] == "gemini-3.5-flash"
    assert "Did you mean `gemini-3.5-flash`" in exc.value.message
    assert "gemini-3.5-flash" in exc.value.extra["available_models"]
    with pytest.raises(GatewayError) as exc:
        catalog.resolve("claude-opus-9", capability="chat")
    assert exc.value.extra["suggestions"] and all("claude-opus" in s for s in exc.value.extra["suggestions"])
