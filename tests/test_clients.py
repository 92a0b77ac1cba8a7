"""The real coding-agent CLIs, installed from npm at pinned versions (tests/clients, `make test-deps`), run
non-interactively against the simulator-backed gateway with their default model settings, configured as the
README's Clients section says; and every model of the catalog answers from the simulator.

Each CLI is asked to just say hi: it must print the simulator's answer after one model call (no tool call the
prompt did not ask for), and every call it made is logged and charged exactly once.
"""

import base64
import io
import json
import os
import subprocess
import wave
from pathlib import Path

import httpx
import pytest

from billing.models import LedgerEntry
from gateway.catalog_file import catalog_file_read
from sim.text import reply_words
from tests.live import ROOT
from usage.models import RequestLog

CLIENTS = ROOT / "tests" / "clients" / "node_modules" / ".bin"
PROMPT = "Say hi"
ANSWER = " ".join(reply_words(PROMPT))  # what the simulator answers it, whatever the format


@pytest.fixture(scope="module")
def installed() -> Path:
    if not (CLIENTS / "claude").exists():
        if os.environ.get("CI"):
            pytest.fail("tests/clients is not installed: `make test-deps` installs it")
        pytest.skip("tests/clients is not installed (run `make test-deps`)")
    return CLIENTS


def run(command: list[str], home: Path, workdir: Path, env: dict[str, str]) -> str:
    """The CLI in a home and a working directory of its own, with nothing of ours in its environment but
    PATH: no stray keys, and (as each CLI documents) no update checks or telemetry leaving the machine."""
    done = subprocess.run(command, cwd=workdir, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=120, env={"PATH": os.environ["PATH"], "HOME": str(home), "TMPDIR": str(home),
                                            "LANG": "C.UTF-8", **env})
    assert done.returncode == 0, f"{command[0]} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def places(tmp_path: Path) -> tuple[Path, Path]:
    home, workdir = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    workdir.mkdir()
    return home, workdir


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def charged_once(gateway_url: str, account) -> list[RequestLog]:
    """The account's calls, each logged as served and charged once, exactly its cost."""
    assert httpx.get(f"{gateway_url}/api/v1/credits", headers=bearer(account.key)).is_success
    logs = list(RequestLog.objects.filter(organization=account.org).order_by("created_at"))
    for log in logs:
        assert (log.status, log.error_type) == (200, ""), log.model
        assert log.cost > 0
        (charge,) = LedgerEntry.objects.filter(idempotency_key=f"call:{log.request_id}")
        assert charge.amount == -log.cost
    return logs


def test_claude_code_answers_on_its_default_model(installed, gateway_url, account, tmp_path):
    home, workdir = places(tmp_path)
    out = run([str(installed / "claude"), "-p", PROMPT], home, workdir, {
        "ANTHROPIC_BASE_URL": f"{gateway_url}/api", "ANTHROPIC_API_KEY": account.key,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",  # no autoupdater, telemetry, error reports
    })
    assert out.strip() == ANSWER
    (call,) = charged_once(gateway_url, account)
    assert (call.endpoint, call.model, call.stream) == ("messages", "claude-opus-5-5", True)


def test_codex_answers_on_its_default_model(installed, gateway_url, account, tmp_path):
    home, workdir = places(tmp_path)
    (home / ".codex").mkdir()
    (home / ".codex" / "config.toml").write_text(f"""\
check_for_update_on_startup = false
model_provider = "hypereal"

[model_providers.hypereal]
name = "Hypereal"
base_url = "{gateway_url}/api/v1"
wire_api = "responses"
env_key = "HYPEREAL_API_KEY"
""")
    out = run([str(installed / "codex"), "exec", "--skip-git-repo-check", PROMPT], home, workdir,
              {"HYPEREAL_API_KEY": account.key})
    assert out.strip() == ANSWER
    (call,) = charged_once(gateway_url, account)
    assert (call.endpoint, call.model, call.stream) == ("responses", "gpt-6.2-sol", True)


def test_gemini_cli_answers_on_its_default_models(installed, gateway_url, account, tmp_path):
    home, workdir = places(tmp_path)
    (home / ".gemini").mkdir()
    (home / ".gemini" / "settings.json").write_text(json.dumps({
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "privacy": {"usageStatisticsEnabled": False},
        "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
    }))
    out = run([str(installed / "gemini"), "-p", PROMPT], home, workdir, {
        "GEMINI_API_KEY": account.key, "GOOGLE_GEMINI_BASE_URL": gateway_url, "GEMINI_CLI_TRUST_WORKSPACE": "true",
    })
    assert out.strip() == ANSWER
    router, answer = charged_once(gateway_url, account)  # its router picks the model, then that model answers
    assert (router.model, router.stream) == ("gemini-3.5-flash-lite", False)
    assert (answer.model, answer.stream) == ("gemini-3.8-flash", True)


# --- what every client finds: API roots, JSON 404s, token counts --------------------------------------------

@pytest.mark.parametrize("root", ["/api", "/api/v1", "/v1", "/v1beta", "/api/v1/"])
def test_api_roots_answer_get_and_head(gateway_url, root):
    assert httpx.get(gateway_url + root).json()["object"] == "api"
    head = httpx.head(gateway_url + root)
    assert (head.status_code, head.content) == (200, b"")


@pytest.mark.parametrize(("path", "shape"), [
    ("/api/v1/nothing", "openai"), ("/v1/messages/batches", "anthropic"), ("/v1beta/nothing", "gemini"),
    ("/api/messages", "anthropic"), ("/api/v1/v1/chat/completions", "openai"),
])
def test_unknown_api_paths_answer_json_404_in_their_apis_shape(gateway_url, account, path, shape):
    resp = httpx.post(gateway_url + path, headers=bearer(account.key), json={})
    assert resp.status_code == 404 and resp.headers["content-type"] == "application/json"
    body = resp.json()
    message = body["error"]["message"]
    if shape == "openai":
        assert (body["error"]["type"], body["error"]["code"]) == ("not_found_error", "not_found")
    if shape == "anthropic":
        assert body["type"] == "error" and body["error"]["type"] == "not_found_error"
    if shape == "gemini":
        assert (body["error"]["code"], body["error"]["status"]) == (404, "NOT_FOUND")
    meant = {"/api/messages": "/api/v1/messages", "/api/v1/v1/chat/completions": "/api/v1/chat/completions"}
    assert (f"Did you mean {meant[path]}?" in message) if path in meant else "Did you mean" not in message


def test_count_tokens_is_anthropics_count_free_and_unlogged(gateway_url, account):
    import anthropic

    client = anthropic.Anthropic(base_url=f"{gateway_url}/api", api_key=account.key, max_retries=0)
    question = [{"role": "user", "content": "How many tokens is this prompt?"}]
    counted = client.messages.count_tokens(model="claude-sonnet-4-6", system="Be brief.", messages=question)
    usage = client.messages.create(model="claude-sonnet-4-6", max_tokens=64, system="Be brief.", messages=question,
                                   extra_body={"hypereal": {"cache": False}}).usage
    assert counted.input_tokens == usage.input_tokens  # counted upstream: what the call is billed for
    assert client.messages.count_tokens(model="gpt-5.5", messages=question).input_tokens > 0  # estimated
    with pytest.raises(anthropic.BadRequestError) as exc:
        client.messages.count_tokens(model="claude-sonet-4-6", messages=question)
    assert exc.value.body["error"]["suggestions"][0] == "claude-sonnet-4-6"
    assert [log.endpoint for log in charged_once(gateway_url, account)] == ["messages"]


# --- every model of the catalog answers from the simulator ---------------------------------------------------

CATALOG = catalog_file_read()


def by_capability(capability: str) -> list[str]:
    return [model_id for model_id, model in CATALOG.models.items() if model.capability == capability]


@pytest.fixture
def wealthy(make_account):
    return make_account(credits="100000")  # video holds add up


@pytest.mark.parametrize("model", by_capability("chat"))
def test_every_chat_model_answers(gateway_url, wealthy, model):
    anthropic = CATALOG.providers[CATALOG.models[model].targets[0][0]].kind == "anthropic"
    if anthropic:
        resp = httpx.post(f"{gateway_url}/v1/messages", headers=bearer(wealthy.key), json={
            "model": model, "max_tokens": 64, "messages": [{"role": "user", "content": PROMPT}]})
        text = resp.json()["content"][0]["text"] if resp.is_success else resp.text
    else:
        resp = httpx.post(f"{gateway_url}/v1/chat/completions", headers=bearer(wealthy.key),
                          json={"model": model, "messages": [{"role": "user", "content": PROMPT}]})
        text = resp.json()["choices"][0]["message"]["content"] if resp.is_success else resp.text
    assert (resp.status_code, text) == (200, ANSWER)


@pytest.mark.parametrize("model", by_capability("image"))
def test_every_image_model_answers(gateway_url, wealthy, model):
    resp = httpx.post(f"{gateway_url}/v1/images/generations", headers=bearer(wealthy.key), timeout=60,
                      json={"model": model, "prompt": "a chrome teapot"})
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["data"]) == 1


@pytest.mark.parametrize("model", by_capability("video"))
def test_every_video_model_makes_a_clip(gateway_url, wealthy, model):
    accepts = CATALOG.models[model].parameters
    resp = httpx.post(f"{gateway_url}/v1/videos/generate", headers=bearer(wealthy.key), timeout=60, json={
        "model": model, "prompt": "a white cube", "duration": accepts["durations"][0],
        "aspect_ratio": accepts["aspect_ratios"][0], "resolution": accepts["resolutions"][0],
        "sim": {"queue_ms": 0, "run_ms": 0}})  # done at once: no job is left for the job tests' sweeps
    assert (resp.status_code, resp.json()["status"]) == (200, "succeeded"), resp.text


def wav_data_url(seconds: int) -> str:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(16000)
        out.writeframes(b"\0\0" * 16000 * seconds)
    return "data:audio/wav;base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize("model", by_capability("audio"))
def test_every_audio_model_answers(gateway_url, wealthy, model):
    task = CATALOG.models[model].parameters["task"]
    body = {"tts": {"text": "Welcome to Hypereal."}, "asr": {"audio": wav_data_url(2)},
            "clone": {"text": "My voice.", "audio": wav_data_url(11)}}[task]
    resp = httpx.post(f"{gateway_url}/v1/audio/generations", headers=bearer(wealthy.key), timeout=60,
                      json={"model": model, **body})
    assert resp.status_code == 200, resp.text
    assert resp.json()["data"] if task != "asr" else "text" in resp.json()
