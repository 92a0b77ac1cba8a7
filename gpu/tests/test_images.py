"""Images over real HTTP: the official openai SDK and plain JSON against a live gateway and the simulator."""

import base64
import time
import uuid

import httpx
import openai
import pytest
from openai import OpenAI

from billing.models import LedgerEntry
from billing.money import MICRO
from gpu.tests.media_support import (  # noqa: F401  (fetching_gateway_url is a fixture)
    FETCH_LIMIT,
    auth,
    balance,
    data_url,
    fetching_gateway_url,
    logged,
    micro,
    picture_size,
    png,
    sim_requests,
    sim_saw,
)
from usage.models import RequestLog


def marker() -> str:
    """A prompt no other test sends, to find (or not) in what the simulator received."""
    return f"a lighthouse at dusk {uuid.uuid4().hex}"


@pytest.fixture
def account(make_account):
    return make_account()


@pytest.fixture
def client(gateway_url, account):
    return OpenAI(base_url=f"{gateway_url}/api/v1", api_key=account.key, max_retries=0)


def generate(gateway_url: str, account, timeout: float = 30, **body) -> httpx.Response:
    return httpx.post(f"{gateway_url}/api/v1/images/generations", headers=auth(account), json=body, timeout=timeout)


def test_sdk_generate_returns_b64_images_billed_each_at_its_size_tier(gateway_url, account, client):
    before = balance(gateway_url, account.key)
    raw = client.images.with_raw_response.generate(model="gpt-image-2", prompt=marker(), n=2, size="1536x1024")
    images = raw.parse()
    assert len(images.data) == 2 and all(image.url is None for image in images.data)
    assert [picture_size(base64.b64decode(image.b64_json)) for image in images.data] == [(1536, 1024)] * 2
    assert images.usage.output_tokens > 0 and images.size == "1536x1024"
    cost = micro(images.usage.model_extra["cost"])
    assert cost == 2 * 5 * MICRO  # 5 credits an image at 1K
    assert micro(float(raw.headers["x-hypereal-credits"])) == cost
    request_id = raw.headers["x-request-id"]
    assert balance(gateway_url, account.key) == before - cost
    assert LedgerEntry.objects.get(idempotency_key=f"call:{request_id}").amount == -cost
    log = logged(gateway_url, account, request_id)
    assert (log.endpoint, log.model, log.status, log.unit, log.units, log.cost) == (
        "images.generations", "gpt-image-2", 200, "image", 2, cost)
    assert (log.provider, log.upstream_model) == ("simulator-openai", "gpt-image-2")
    assert log.output_tokens == images.usage.output_tokens and log.latency_ms >= 0


def test_resolution_tiers_price_gemini_images_and_urls_download_real_pictures(fetching_gateway_url, make_account,
                                                                               sim_url):
    account, prompt = make_account(), marker()
    before = balance(fetching_gateway_url, account.key)
    resp = generate(fetching_gateway_url, account, model="nano_banana_2", prompt=prompt, n=3, aspect_ratio="16:9",
                    resolution="2K")
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert len(answer["data"]) == 3 and all(item["file_id"].startswith("file_") for item in answer["data"])
    for item in answer["data"]:  # signed: no key needed
        download = httpx.get(item["url"])
        assert download.status_code == 200 and download.headers["content-type"] == "image/png"
        assert picture_size(download.content) == (1344, 768)
    cost = micro(answer["usage"]["cost"])
    assert cost == 3 * 10_100_000  # 10.1 credits an image at 2K
    assert answer["usage"]["output_tokens"] > 0
    assert balance(fetching_gateway_url, account.key) == before - cost
    log = logged(fetching_gateway_url, account, resp.headers["x-request-id"])
    assert (log.model, log.unit, log.units, log.cost, log.upstream_model) == (
        "gemini-3-1-flash-t2i", "image", 3, cost, "gemini-3.1-flash-image-preview")
    sent = [r["body"] for r in sim_requests(sim_url) if prompt in str(r["body"])]
    assert len(sent) == 3  # Gemini makes one image a call
    assert all(body["generationConfig"] == {"responseModalities": ["IMAGE"],
                                            "imageConfig": {"aspectRatio": "16:9", "imageSize": "2K"}}
               for body in sent)


def test_sdk_size_is_the_aspect_ratio_of_a_gemini_model(gateway_url, client):
    images = client.images.generate(model="nano_banana", prompt=marker(), size="1536x1024",
                                    response_format="b64_json")
    assert picture_size(base64.b64decode(images.data[0].b64_json)) == (1248, 832)  # Gemini's 3:2
    assert micro(images.usage.model_extra["cost"]) == 3_900_000


def test_402_before_any_upstream_call_when_the_price_times_n_is_not_covered(gateway_url, make_account, sim_url):
    account = make_account(credits="9")
    for body in ({"n": 2}, {"size": "2048x2048"}):  # 2 × 5 credits; one 2K image, 10 credits
        prompt = marker()
        resp = generate(gateway_url, account, model="gpt-image-2", prompt=prompt, **body)
        assert resp.status_code == 402, resp.text
        assert resp.json()["error"]["code"] == "insufficient_credits"
        assert not sim_saw(sim_url, prompt)
        log = logged(gateway_url, account, resp.headers["x-request-id"])
        assert (log.status, log.cost, log.model) == (402, 0, "gpt-image-2")
    assert balance(gateway_url, account.key) == 9 * MICRO
    resp = generate(gateway_url, account, model="gpt-image-2", prompt=marker())
    assert resp.status_code == 200, resp.text
    assert balance(gateway_url, account.key) == 4 * MICRO


URLS = [f"https://example.com/{n}.png" for n in range(5)]


@pytest.mark.parametrize("model,body,param", [
    ("gpt-image-2", {"n": 0}, "n"),
    ("gpt-image-2", {"n": 11}, "n"),
    ("gpt-image-2", {"n": "two"}, "n"),
    ("gpt-image-2", {"n": True}, "n"),
    ("gpt-image-2", {"size": "2048x1024"}, "size"),  # 2K and 4K are square only
    ("gpt-image-2", {"size": "512x512"}, "size"),
    ("gpt-image-2", {"reference_images": URLS}, "reference_images"),  # at most 4
    ("gpt-image-2", {"reference_images": "https://example.com/a.png"}, "reference_images"),  # not a list
    ("gpt-image-2", {"reference_images": ["http://example.com/a.png"]}, "reference_images"),
    ("gpt-image-2", {"reference_images": [data_url(png(), "image/png")]}, "reference_images"),  # no base64 here
    ("gpt-image-2", {"reference_images": ["file_0123"]}, "reference_images"),
    ("gpt-image-2", {"image_urls": URLS[:1]}, "image_urls"),  # Gemini's field
    ("gpt-image-2", {"aspect_ratio": "16:9"}, "aspect_ratio"),
    ("gpt-image-2", {"image_url": URLS[0]}, "image_url"),  # misspelt: never silently text-to-image
    ("gpt-image-2", {"prompt": ""}, "prompt"),
    ("gpt-image-2", {"prompt": 42}, "prompt"),
    ("gpt-image-2", {"response_format": "png"}, "response_format"),
    ("gemini-3-1-flash-t2i", {"aspect_ratio": "5:4"}, "aspect_ratio"),
    ("gemini-3-1-flash-t2i", {"resolution": "8K"}, "resolution"),
    ("gemini-3-1-flash-t2i", {"size": "2048x1024"}, "size"),  # 2:1 is none of its ratios
    ("gemini-3-1-flash-t2i", {"size": "1024x1024", "aspect_ratio": "1:1"}, "size"),
    ("gemini-3-1-flash-t2i", {"image_urls": URLS}, "image_urls"),  # at most 4
    ("gemini-3-1-flash-t2i", {"image_urls": ["data:image/png;base64,@@@"]}, "image_urls"),
    ("gemini-3-1-flash-t2i", {"image_urls": ["ftp://example.com/a.png"]}, "image_urls"),
    ("gemini-3-1-flash-t2i", {"image": 7}, "image"),
    ("gemini-3-1-flash-t2i", {"reference_images": URLS[:1]}, "reference_images"),
    ("gemini-3-1-flash-t2i", {"quality": "high"}, "quality"),
    ("nano_banana", {"image_urls": URLS[:4]}, "image_urls"),  # at most 3
    ("nano_banana", {"resolution": "2K"}, "resolution"),
])
def test_model_specific_fields_are_checked_before_anything_is_sent(gateway_url, make_account, sim_url, model, body,
                                                                    param):
    account, prompt = make_account(), marker()
    resp = generate(gateway_url, account, model=model, **{"prompt": prompt, **body})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert f"`{param}`" in error["message"]
    assert not sim_saw(sim_url, prompt)
    log = logged(gateway_url, account, resp.headers["x-request-id"])
    assert (log.status, log.cost, log.model) == (400, 0, model)


@pytest.mark.parametrize("url", [
    "https://127.0.0.1/a.png",
    "https://[::1]/a.png",
    "https://10.1.2.3/a.png",
    "https://169.254.169.254/latest/meta-data/",  # cloud metadata
    "https://localhost/a.png",  # a name that resolves to loopback
    "http://example.com/a.png",
])
def test_reference_urls_must_be_https_and_public(gateway_url, make_account, sim_url, url):
    account, prompt = make_account(), marker()
    resp = generate(gateway_url, account, model="gemini-3-1-flash-t2i", prompt=prompt, image_urls=[url])
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == "image_urls"
    assert not sim_saw(sim_url, prompt)
    assert balance(gateway_url, account.key) == 1000 * MICRO


def test_references_by_url_data_url_and_file_id_reach_gemini_inline(fetching_gateway_url, make_account, sim_url):
    account, prompt = make_account(), marker()
    stored = httpx.post(f"{fetching_gateway_url}/api/v1/storage", headers=auth(account), data={"kind": "input"},
                        files={"file": ("scene.png", png(40, 30, "red"), "image/png")}).json()
    refs = [f"{sim_url}/_sim/media/image.jpeg?width=64&height=48&seed=a", data_url(png(), "image/png"), stored["id"]]
    resp = generate(fetching_gateway_url, account, model="gemini-3-1-flash-t2i", prompt=prompt, image_urls=refs,
                    response_format="b64_json")
    assert resp.status_code == 200, resp.text
    body = next(r["body"] for r in sim_requests(sim_url) if prompt in str(r["body"]))
    parts = body["contents"][0]["parts"]
    assert parts[0] == {"text": prompt}
    assert [p["inlineData"]["mimeType"] for p in parts[1:]] == ["image/jpeg", "image/png", "image/png"]
    assert [picture_size(base64.b64decode(p["inlineData"]["data"])) for p in parts[1:]] == [
        (64, 48), (64, 48), (40, 30)]


def test_gpt_image_references_become_an_edit_upstream(fetching_gateway_url, make_account, sim_url):
    account, prompt = make_account(), marker()
    refs = [f"{sim_url}/_sim/media/image.png?width=32&height=32&seed={n}" for n in range(2)]
    resp = generate(fetching_gateway_url, account, model="gpt-image-2", prompt=prompt, reference_images=refs)
    assert resp.status_code == 200, resp.text
    assert picture_size(base64.b64decode(resp.json()["data"][0]["b64_json"])) == (1024, 1024)
    edit = next(r for r in sim_requests(sim_url) if prompt in str(r["body"]))
    assert edit["path"] == "/v1/images/edits"
    assert [(i["content_type"], i["filename"]) for i in edit["body"]["image"]] == [
        ("image/png", "reference_images.png")] * 2


@pytest.mark.parametrize("url,code", [
    ("/_sim/media/image.png?width=4096&height=4096&seed=big", "media_too_large"),
    ("/_sim/media/video.mp4?width=64&height=64&seconds=1", "invalid_media"),  # not a picture
    ("/_sim/media/missing.png?width=1&height=1", "media_unreachable"),  # 404
])
def test_a_reference_that_cannot_be_used_is_refused_and_not_billed(fetching_gateway_url, make_account, sim_url, url,
                                                                    code):
    account, prompt = make_account(), marker()
    resp = generate(fetching_gateway_url, account, model="nano_banana", prompt=prompt, image_urls=[sim_url + url])
    assert resp.status_code == 400, resp.text
    assert (resp.json()["error"]["code"], resp.json()["error"]["param"]) == (code, "image_urls")
    assert not sim_saw(sim_url, prompt)
    assert balance(fetching_gateway_url, account.key) == 1000 * MICRO


def test_a_body_over_the_media_limit_is_413(fetching_gateway_url, account):
    resp = generate(fetching_gateway_url, account, model="nano_banana", prompt="big",
                    image_urls=[data_url(b"\0" * FETCH_LIMIT, "image/png")])
    assert resp.status_code == 413 and resp.json()["error"]["type"] == "request_too_large"


def test_sdk_edit_sends_every_image_upstream(gateway_url, client, sim_url):
    prompt = marker()
    raw = client.images.with_raw_response.edit(model="gpt-image-2", prompt=prompt, n=2, size="1024x1536",
                                               image=[("a.png", png(), "image/png"), ("b.png", png(), "image/png")])
    images = raw.parse()
    assert [picture_size(base64.b64decode(image.b64_json)) for image in images.data] == [(1024, 1536)] * 2
    assert micro(float(raw.headers["x-hypereal-credits"])) == 10 * MICRO
    edit = next(r for r in sim_requests(sim_url) if prompt in str(r["body"]))
    assert edit["path"] == "/v1/images/edits" and len(edit["body"]["image"]) == 2
    assert (edit["body"]["n"], edit["body"]["size"]) == ("2", "1024x1536")


def test_sdk_edit_of_a_gemini_model_and_what_it_refuses(gateway_url, client, sim_url):
    prompt = marker()
    images = client.images.edit(model="nano_banana", prompt=prompt, image=("a.png", png(), "image/png"),
                                response_format="b64_json")
    assert picture_size(base64.b64decode(images.data[0].b64_json)) == (1024, 1024)
    body = next(r["body"] for r in sim_requests(sim_url) if prompt in str(r["body"]))
    assert body["contents"][0]["parts"][1]["inlineData"]["mimeType"] == "image/png"
    with pytest.raises(openai.BadRequestError) as exc:
        client.images.edit(model="nano_banana", prompt="x", image=("a.png", png(), "image/png"),
                           mask=("m.png", png(), "image/png"))
    assert exc.value.body["param"] == "mask"
    with pytest.raises(openai.BadRequestError) as exc:
        client.images.edit(model="nano_banana", prompt="x", image=("a.txt", b"not a picture", "text/plain"))
    assert (exc.value.body["param"], exc.value.body["code"]) == ("image", "invalid_media")


def test_an_intent_picks_the_cheapest_model_of_its_bucket_and_a_model_is_honoured(gateway_url, make_account):
    account = make_account()
    url = f"{gateway_url}/v1/images/generate"  # the reference's intent example
    resp = httpx.post(url, headers=auth(account), json={"intent": "text-to-image-fast", "prompt": marker(),
                                                        "response_format": "b64_json"})
    assert resp.status_code == 200, resp.text
    assert logged(gateway_url, account, resp.headers["x-request-id"]).model == "nano_banana"  # 3.9 < 6.7 credits
    resp = httpx.post(url, headers=auth(account), json={"intent": "text-to-image-fast", "prompt": marker(),
                                                        "model": "gemini-3-1-flash-t2i", "response_format": "b64_json"})
    assert resp.status_code == 200, resp.text
    assert logged(gateway_url, account, resp.headers["x-request-id"]).model == "gemini-3-1-flash-t2i"
    resp = httpx.post(url, headers=auth(account), json={"intent": "text-to-video-slow", "prompt": "x"})
    assert resp.status_code == 400 and "text-to-image-fast" in resp.json()["error"]["available_intents"]


def test_a_failing_first_target_falls_back_to_the_next(gateway_url, account, client):
    raw = client.images.with_raw_response.generate(model="sim-flaky-image", prompt=marker())
    assert len(raw.parse().data) == 1
    log = logged(gateway_url, account, raw.headers["x-request-id"])
    assert (log.status, log.provider, log.cost, log.units) == (200, "simulator-openai", MICRO, 1)
    assert [(a["provider"], a["status"]) for a in log.attempts] == [
        ("simulator-broken", 500), ("simulator-broken", 500), ("simulator-openai", 200)]


def test_an_upstream_that_answers_urls_is_downloaded(fetching_gateway_url, account):
    resp = generate(fetching_gateway_url, account, model="tc-image-url-upstream", prompt=marker())
    assert resp.status_code == 200, resp.text
    item = resp.json()["data"][0]
    assert picture_size(base64.b64decode(item["b64_json"])) == (1024, 1024) and item["revised_prompt"]


def test_a_client_that_leaves_is_logged_charged_nothing_and_its_reservation_released(fetching_gateway_url,
                                                                                      make_account):
    account = make_account(credits="2")
    with pytest.raises(httpx.ReadTimeout):  # its only upstream never answers
        generate(fetching_gateway_url, account, timeout=1, model="tc-image-hang", prompt=marker())
    deadline = time.monotonic() + 10
    while not (logs := list(RequestLog.objects.filter(organization=account.org))):
        assert time.monotonic() < deadline, "the call its client left was never logged"
        balance(fetching_gateway_url, account.key)
    assert (logs[0].status, logs[0].error_type, logs[0].cost) == (499, "client_disconnected", 0)
    resp = generate(fetching_gateway_url, account, model="tc-image-url-upstream", prompt=marker())  # 2 credits
    assert resp.status_code == 200, resp.text
    assert balance(fetching_gateway_url, account.key) == 0


@pytest.mark.parametrize("model,endpoint", [
    ("gpt-5.5", "/v1/chat/completions"),
    ("claude-sonnet-4-6", "/v1/messages"),
    ("audio-tts", "/v1/audio/generations"),
])
def test_a_model_of_another_capability_is_sent_to_its_endpoint(gateway_url, account, model, endpoint):
    resp = generate(gateway_url, account, model=model, prompt="x")
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["code"] == "wrong_endpoint_for_model" and endpoint in error["message"]


def test_an_image_model_on_the_chat_endpoint_is_sent_to_images(client):
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="gpt-image-2", messages=[{"role": "user", "content": "draw"}])
    assert exc.value.body["code"] == "wrong_endpoint_for_model"
    assert "/v1/images/generations" in exc.value.body["message"]


def test_models_lists_image_models_with_prices_and_endpoints(client):
    models = {m.id: m.model_dump() for m in client.models.list().data}
    gpt = models["gpt-image-2"]
    assert (gpt["capability"], gpt["endpoints"]) == ("image", ["/v1/images/generations", "/v1/images/edits"])
    assert gpt["pricing"] == {"unit": "credits per image", "price": 5}
    assert gpt["parameters"]["sizes"]["4096x4096"] == "20"
    gemini = models["gemini-3-1-flash-t2i"]
    assert gemini["aliases"] == ["nano_banana_2"] and gemini["parameters"]["resolutions"]["0.5K"] == "4.5"
