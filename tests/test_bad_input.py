"""Bad input at every model endpoint: a 400 (or 413) in the endpoint's own error shape naming what is wrong,
never a 500, and never a charge."""

import copy
import json

import httpx
import pytest

from tests.live import TEST_MAX_BODY_BYTES
from tests.test_chat_completions import balance
from usage.models import RequestLog

MODEL = "gpt-5.4-mini"
USER = [{"role": "user", "content": "hi"}]
ENDPOINTS = {  # name: (path, a valid body, the shape its errors take)
    "chat": ("/api/v1/chat/completions", {"model": MODEL, "messages": USER}, "openai"),
    "responses": ("/api/v1/responses", {"model": MODEL, "input": "hi"}, "openai"),
    "messages": ("/api/v1/messages", {"model": MODEL, "max_tokens": 50, "messages": USER}, "anthropic"),
    "gemini": (f"/v1beta/models/{MODEL}:generateContent", {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
               "gemini"),
    "gemini-stream": (f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse",
                      {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}, "gemini"),
    "count_tokens": ("/api/v1/messages/count_tokens", {"model": MODEL, "messages": USER}, "anthropic"),
}

# (endpoint, field path, bad value, what the error must name); a path like "generationConfig.topP" nests.
CASES = [
    ("chat", "max_tokens", -1, "max_tokens"),
    ("chat", "max_tokens", 0, "max_tokens"),
    ("chat", "max_tokens", "10", "max_tokens"),
    ("chat", "max_tokens", 10**9, "max_tokens"),  # beyond the model's output limit
    ("chat", "max_completion_tokens", -5, "max_completion_tokens"),
    ("chat", "n", 1000, "n"),
    ("chat", "n", 0, "n"),
    ("chat", "n", "2", "n"),
    ("chat", "temperature", "hot", "temperature"),
    ("chat", "temperature", 3, "temperature"),
    ("chat", "top_p", 2, "top_p"),
    ("chat", "stream", "yes", "stream"),
    ("chat", "tools", "search", "tools"),
    ("chat", "tools", [{"type": "function"}], "tools"),
    ("chat", "tools", [{"type": "function", "function": {"name": 5}}], "tools"),
    ("chat", "messages", "hi", "messages"),
    ("chat", "messages", [], "messages"),
    ("chat", "messages", [{"content": "hi"}], "messages"),
    ("chat", "messages", [{"role": "user", "content": 5}], "messages"),
    ("chat", "model", 5, "model"),
    ("responses", "max_output_tokens", -1, "max_output_tokens"),
    ("responses", "temperature", "hot", "temperature"),
    ("responses", "top_p", -0.5, "top_p"),
    ("responses", "stream", "yes", "stream"),
    ("responses", "tools", {"type": "function"}, "tools"),
    ("responses", "input", 5, "input"),
    ("responses", "model", ["x"], "model"),
    ("messages", "max_tokens", -1, "max_tokens"),
    ("messages", "max_tokens", "50", "max_tokens"),
    ("messages", "max_tokens", 10**9, "max_tokens"),
    ("messages", "temperature", 1.5, "temperature"),  # Anthropic's range is 0 to 1
    ("messages", "top_p", "all", "top_p"),
    ("messages", "stream", "yes", "stream"),
    ("messages", "tools", [{"description": "no name"}], "tools"),
    ("messages", "messages", "hi", "messages"),
    ("messages", "messages", [{"role": "robot", "content": "x"}], "messages"),
    ("messages", "model", 5, "model"),
    ("gemini", "generationConfig.maxOutputTokens", -1, "generationConfig.maxOutputTokens"),
    ("gemini", "generationConfig.candidateCount", 1000, "generationConfig.candidateCount"),
    ("gemini", "generationConfig.temperature", "hot", "generationConfig.temperature"),
    ("gemini", "generationConfig.topP", 2, "generationConfig.topP"),
    ("gemini", "contents", "hi", "contents"),
    ("gemini", "contents", [{"role": "user", "parts": "hi"}], "contents"),
    ("gemini", "tools", "search", "tools"),
    ("gemini-stream", "generationConfig.maxOutputTokens", "many", "generationConfig.maxOutputTokens"),
    ("count_tokens", "messages", "hi", "messages"),
]


def with_field(body: dict, path: str, value: object) -> dict:
    body = copy.deepcopy(body)
    *parents, name = path.split(".")
    node = body
    for parent in parents:
        node = node.setdefault(parent, {})
    node[name] = value
    return body


def error_of(shape: str, resp: httpx.Response) -> str:
    """The error's message, after checking the response has the shape its SDK reads."""
    assert resp.headers["content-type"].startswith("application/json"), resp.text[:200]
    body = resp.json()
    if shape == "openai":
        assert set(body["error"]) >= {"message", "type", "code"}
    elif shape == "anthropic":
        assert body["type"] == "error" and body["error"]["type"]
    else:
        assert body["error"]["code"] == resp.status_code and body["error"]["status"]
    return body["error"]["message"]


def post(gateway_url: str, key: str, path: str, content: bytes) -> httpx.Response:
    return httpx.post(f"{gateway_url}{path}", content=content, timeout=30,
                      headers={"Authorization": f"Bearer {key}", "x-api-key": key, "content-type": "application/json"})


@pytest.mark.parametrize("endpoint,path,value,named", CASES,
                         ids=[f"{e}-{p}={json.dumps(v)[:20]}" for e, p, v, _ in CASES])
def test_a_bad_field_is_a_400_naming_it(gateway_url, account, endpoint, path, value, named):
    url, valid, shape = ENDPOINTS[endpoint]
    resp = post(gateway_url, account.key, url, json.dumps(with_field(valid, path, value)).encode())
    assert resp.status_code == 400, resp.text[:300]
    assert f"`{named}`" in error_of(shape, resp)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_bodies_that_are_not_requests(gateway_url, account, endpoint):
    url, valid, shape = ENDPOINTS[endpoint]
    for content, status in [
        (b"[" * 200_000, 400),  # nesting no parser should follow
        (json.dumps(with_field(valid, "metadata", json.loads("[" * 200 + "]" * 200))).encode(), 400),
        (b"{not json", 400),
        (b"[1, 2]", 400),
        (json.dumps({**valid, "padding": "x" * TEST_MAX_BODY_BYTES}).encode(), 413),
    ]:
        resp = post(gateway_url, account.key, url, content)
        assert resp.status_code == status, (content[:40], resp.text[:300])
        error_of(shape, resp)
    assert post(gateway_url, account.key, url, json.dumps(valid).encode()).status_code == 200, \
        "the valid body is served: the errors above are the bad input's"


def test_no_bad_request_is_charged(gateway_url, account):
    before = balance(gateway_url, account.key)
    for endpoint, path, value, _ in CASES:
        url, valid, _ = ENDPOINTS[endpoint]
        assert post(gateway_url, account.key, url, json.dumps(with_field(valid, path, value)).encode()
                    ).status_code == 400
    assert balance(gateway_url, account.key) == before
    assert not RequestLog.objects.filter(organization=account.org, cost__gt=0).exists()


def test_unknown_paths_and_methods_answer_json_in_their_apis_shape(gateway_url, account):
    for path, shape in [("/api/v1/nothing-here", "openai"), ("/v1/chat/completion", "openai"),
                        ("/v1/messages/nope", "anthropic"), ("/v1beta/models/x:unknownMethod", "gemini"),
                        ("/v1beta/models/..%2F..%2Fadmin:generateContent", "gemini")]:
        resp = post(gateway_url, account.key, path, b"{}")
        assert resp.status_code == 404, (path, resp.text[:200])
        error_of(shape, resp)
    resp = httpx.get(f"{gateway_url}/api/v1/chat/completions", headers={"Authorization": f"Bearer {account.key}"})
    assert resp.status_code == 405 and "POST" in resp.headers["allow"]
    error_of("openai", resp)
    resp = httpx.get(f"{gateway_url}/v1/messages", headers={"x-api-key": account.key})
    assert resp.status_code == 405
    error_of("anthropic", resp)
