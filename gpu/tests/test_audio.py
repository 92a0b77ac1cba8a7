"""Audio over real HTTP: Hypereal's audio/generations (speech, voice cloning, transcription) and OpenAI's speech
and transcriptions through the official openai SDK, against a live gateway and the simulator's Fish Audio."""

import uuid

import httpx
import openai
import pytest
from openai import OpenAI

from billing.models import LedgerEntry
from billing.money import MICRO
from gpu.tests.media_support import (  # noqa: F401  (fetching_gateway_url is a fixture)
    auth,
    balance,
    data_url,
    fetching_gateway_url,
    ffmpeg_seconds,
    logged,
    micro,
    newest,
    sim_saw,
    wav,
)
from sim.audio import transcribe
from sim.media import SECONDS_PER_CHARACTER


def words(count: int) -> str:
    """Text unique to a test, ``count`` words long (the simulator speaks 0.06 s a character)."""
    return " ".join([uuid.uuid4().hex[:8], *["voice"] * (count - 1)])


@pytest.fixture
def account(make_account):
    return make_account()


@pytest.fixture
def client(gateway_url, account):
    return OpenAI(base_url=f"{gateway_url}/api/v1", api_key=account.key, max_retries=0)


def generate(gateway_url: str, account, **body) -> httpx.Response:
    return httpx.post(f"{gateway_url}/api/v1/audio/generations", headers=auth(account), json=body, timeout=30)


def expected_text(audio: bytes) -> str:
    return " ".join(segment.text for segment in transcribe(audio)[1])


def speak(gateway_url: str, account, text: str) -> dict:
    resp = generate(gateway_url, account, model="audio-tts", text=text)
    assert resp.status_code == 200, resp.text
    return resp.json()["data"][0]


def test_tts_answers_a_signed_url_to_real_audio_billed_per_request(fetching_gateway_url, account, sim_url):
    text = words(6)
    before = balance(fetching_gateway_url, account.key)
    resp = generate(fetching_gateway_url, account, model="audio-tts", text=text, voice_id="en_male_calm")
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    item = answer["data"][0]
    download = httpx.get(item["url"])  # signed: no key needed
    assert download.status_code == 200 and download.headers["content-type"] == "audio/mpeg"
    assert ffmpeg_seconds(download.content) == pytest.approx(len(text) * SECONDS_PER_CHARACTER, abs=0.1)
    assert item["duration"] == pytest.approx(len(text) * SECONDS_PER_CHARACTER, abs=0.1)
    assert (item["content_type"], answer["usage"]["characters"]) == ("audio/mpeg", len(text))
    cost = micro(answer["usage"]["cost"])
    assert cost == 4 * MICRO == micro(float(resp.headers["x-hypereal-credits"]))
    request_id = resp.headers["x-request-id"]
    assert balance(fetching_gateway_url, account.key) == before - cost
    assert LedgerEntry.objects.get(idempotency_key=f"call:{request_id}").amount == -cost
    log = logged(fetching_gateway_url, account, request_id)
    assert (log.endpoint, log.model, log.provider, log.upstream_model, log.unit, log.units, log.cost) == (
        "audio.generations", "audio-tts", "simulator-fish", "s2-pro", "request", 1, cost)
    sent = newest(sim_url, "/fish/v1/tts")
    assert sent["body"] == {"text": text, "format": "mp3", "reference_id": "en_male_calm"}
    assert sent["headers"]["model"] == "s2-pro" and sent["headers"]["authorization"].endswith("-key")


def test_sdk_speech_returns_the_audio_bytes(gateway_url, client):
    text = words(4)
    raw = client.audio.speech.with_raw_response.create(model="audio-tts", voice="en_male_calm", input=text,
                                                        response_format="wav")
    audio = raw.parse().read()
    assert audio[:4] == b"RIFF" and raw.headers["content-type"] == "audio/wav"
    assert ffmpeg_seconds(audio) == pytest.approx(len(text) * SECONDS_PER_CHARACTER, abs=0.01)
    assert micro(float(raw.headers["x-hypereal-credits"])) == 4 * MICRO


def test_sdk_speech_of_an_openai_model_passes_its_instructions(gateway_url, client, sim_url):
    text = words(3)
    audio = client.audio.speech.create(model="gpt-4o-mini-tts", voice="coral", input=text,
                                       instructions="Speak calmly.").read()
    assert ffmpeg_seconds(audio) == pytest.approx(len(text) * SECONDS_PER_CHARACTER, abs=0.1)
    sent = newest(sim_url, "/v1/audio/speech")["body"]
    assert sent == {"model": "gpt-4o-mini-tts", "input": text, "voice": "coral", "response_format": "mp3",
                    "instructions": "Speak calmly."}


def test_sdk_transcription_returns_the_transcript(gateway_url, account, client):
    audio = wav(3.2)
    transcript = client.audio.transcriptions.create(model="audio-asr", file=("talk.wav", audio))
    assert transcript.text == expected_text(audio)
    assert micro(transcript.usage.model_extra["cost"]) == 3 * MICRO and transcript.usage.seconds == 4
    verbose = client.audio.transcriptions.create(model="audio-asr", file=("talk.wav", audio),
                                                 response_format="verbose_json")
    assert verbose.duration == pytest.approx(3.2) and verbose.text == transcript.text
    assert " ".join(s.text for s in verbose.segments) == transcript.text and verbose.segments[0].start == 0
    text = client.audio.transcriptions.create(model="whisper-1", file=("talk.wav", audio), response_format="text")
    assert text.strip() == transcript.text
    with pytest.raises(openai.BadRequestError) as exc:
        client.audio.transcriptions.create(model="audio-asr", file=("talk.wav", audio), response_format="srt")
    assert exc.value.body["param"] == "response_format"


def test_asr_reads_audio_by_url_data_url_and_stored_file(fetching_gateway_url, account):
    spoken = speak(fetching_gateway_url, account, words(5))
    audio = httpx.get(spoken["url"]).content
    stored = httpx.post(f"{fetching_gateway_url}/api/v1/storage", headers=auth(account), data={"kind": "input"},
                        files={"file": ("talk.wav", wav(2.0), "audio/wav")}).json()
    for source, heard in ((spoken["url"], audio), (data_url(wav(1.5), "audio/wav"), wav(1.5)),
                          (stored["id"], wav(2.0))):
        resp = generate(fetching_gateway_url, account, model="audio-asr", audio=source, language="en")
        assert resp.status_code == 200, resp.text
        answer = resp.json()
        assert answer["text"] == expected_text(heard)
        assert answer["duration"] == pytest.approx(transcribe(heard)[0], abs=0.001)
        assert " ".join(s["text"] for s in answer["segments"]) == answer["text"]
        assert micro(answer["usage"]["cost"]) == 3 * MICRO


def test_clone_speaks_in_a_voice_made_from_a_long_enough_reference(fetching_gateway_url, account, sim_url):
    reference = speak(fetching_gateway_url, account, words(30))  # 182 characters: about 11 s of speech
    assert reference["duration"] >= 10
    text = words(3)
    resp = generate(fetching_gateway_url, account, model="audio-clone", text=text, audio=reference["url"])
    assert resp.status_code == 200, resp.text
    item = resp.json()["data"][0]
    assert ffmpeg_seconds(httpx.get(item["url"]).content) == pytest.approx(len(text) * SECONDS_PER_CHARACTER,
                                                                             abs=0.1)
    voice = newest(sim_url, "/fish/model")
    assert voice["body"]["voices"]["content_type"] == "audio/mpeg" and voice["body"]["visibility"] == "private"
    tts = newest(sim_url, "/fish/v1/tts")["body"]
    assert tts["text"] == text and len(tts["reference_id"]) == 32  # the voice model made from the reference
    assert micro(resp.json()["usage"]["cost"]) == 6 * MICRO


@pytest.mark.parametrize("reference", ["short-wav", "short-mp3"])
def test_clone_refuses_a_reference_under_ten_seconds_before_any_upstream_call(fetching_gateway_url, account,
                                                                              sim_url, reference):
    audio = data_url(wav(6), "audio/wav") if reference == "short-wav" else \
        speak(fetching_gateway_url, account, words(12))["url"]  # 74 characters: about 4.4 s
    spent = 1000 * MICRO - balance(fetching_gateway_url, account.key)
    last_voice = newest(sim_url, "/fish/model")
    resp = generate(fetching_gateway_url, account, model="audio-clone", text=words(2), audio=audio)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert (error["param"], error["code"]) == ("audio", "reference_too_short") and "at least 10 s" in error["message"]
    assert newest(sim_url, "/fish/model") == last_voice
    assert 1000 * MICRO - balance(fetching_gateway_url, account.key) == spent


def test_402_before_any_upstream_call(gateway_url, make_account, sim_url):
    account, text = make_account(credits="3"), words(2)
    resp = generate(gateway_url, account, model="audio-tts", text=text)  # 4 credits a request
    assert resp.status_code == 402 and resp.json()["error"]["code"] == "insufficient_credits"
    assert not sim_saw(sim_url, text)
    assert logged(gateway_url, account, resp.headers["x-request-id"]).cost == 0


@pytest.mark.parametrize("body,param", [
    ({"model": "audio-tts"}, "text"),
    ({"model": "audio-tts", "text": "x" * 2001}, "text"),  # max_characters
    ({"model": "audio-tts", "text": "hi", "format": "aac"}, "format"),
    ({"model": "audio-tts", "text": "hi", "speed": 9}, "speed"),
    ({"model": "audio-tts", "text": "hi", "audio": "https://example.com/a.wav"}, "audio"),
    ({"model": "audio-clone", "text": "hi"}, "audio"),
    ({"model": "audio-clone", "text": "hi", "voice_id": "x", "audio": "https://example.com/a.wav"}, "voice_id"),
    ({"model": "audio-asr"}, "audio"),
    ({"model": "audio-asr", "audio": "data:audio/wav;base64,@@"}, "audio"),
    ({"model": "audio-asr", "audio": "https://example.com/a.wav", "voice_id": "x"}, "voice_id"),
])
def test_audio_fields_are_checked(gateway_url, account, body, param):
    resp = generate(gateway_url, account, **body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == param


@pytest.mark.parametrize("url", ["https://127.0.0.1/a.wav", "https://localhost/a.wav", "http://example.com/a.wav",
                                 "https://192.168.0.10/a.wav", "https://[fe80::1]/a.wav"])
def test_audio_urls_must_be_https_and_public(gateway_url, account, url):
    last = balance(gateway_url, account.key)
    resp = generate(gateway_url, account, model="audio-asr", audio=url)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "audio", resp.text
    assert balance(gateway_url, account.key) == last


def test_intents_pick_the_cheapest_audio_model(gateway_url, account):
    resp = generate(gateway_url, account, intent="speech-to-text", audio=data_url(wav(1), "audio/wav"))
    assert resp.status_code == 200, resp.text
    assert logged(gateway_url, account, resp.headers["x-request-id"]).model == "whisper-1"  # 2 < 3 credits
    assert resp.json()["text"] == expected_text(wav(1))


@pytest.mark.parametrize("call,model,endpoint", [
    ("speech", "audio-asr", "/v1/audio/transcriptions"),
    ("speech", "audio-clone", "/v1/audio/generations"),
    ("transcription", "audio-tts", "/v1/audio/speech"),
    ("generation", "gpt-5.5", "/v1/chat/completions"),
    ("generation", "gpt-image-2", "/v1/images/generations"),
])
def test_a_model_on_an_endpoint_that_does_not_serve_it_is_sent_to_one_that_does(client, call, model, endpoint):
    with pytest.raises(openai.BadRequestError) as exc:
        if call == "speech":
            client.audio.speech.create(model=model, voice="alloy", input="hi")
        elif call == "transcription":
            client.audio.transcriptions.create(model=model, file=("a.wav", wav(1)))
        else:
            client.post("/audio/generations", body={"model": model, "text": "hi"}, cast_to=object)
    assert exc.value.body["code"] == "wrong_endpoint_for_model" and endpoint in exc.value.body["message"]


def test_models_lists_audio_models_with_their_endpoints(client):
    models = {m.id: m.model_dump() for m in client.models.list().data}
    assert models["audio-tts"]["endpoints"] == ["/v1/audio/generations", "/v1/audio/speech"]
    assert models["audio-clone"]["endpoints"] == ["/v1/audio/generations"]
    assert models["audio-asr"]["endpoints"] == ["/v1/audio/generations", "/v1/audio/transcriptions"]
    assert models["audio-asr"]["pricing"] == {"unit": "credits per request", "price": 3}
    assert models["audio-clone"]["parameters"]["min_reference_seconds"] == 10
