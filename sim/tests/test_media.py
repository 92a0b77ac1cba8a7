"""Images and audio with real bytes, over real HTTP: OpenAI images and audio through the openai SDK, Gemini
image output through google-genai, Fish Audio through httpx; every file is decoded back."""

from __future__ import annotations

import base64
import io
import wave

import av
import httpx
import openai
import pytest
from google import genai
from google.genai import types
from PIL import Image

from sim import media
from sim.audio import transcribe

pytestmark = pytest.mark.no_services
FISH = {"authorization": "Bearer fish-test"}


def oai(sim_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{sim_url}/v1", api_key="sk-test-1234", max_retries=0)


def picture(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 200, 30)).save(out, "PNG")
    return out.getvalue()


def seconds_of(data: bytes) -> float:
    with av.open(io.BytesIO(data)) as container:
        return container.duration / av.time_base


# OpenAI images


@pytest.mark.parametrize(("fmt", "kind"), [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")])
def test_gpt_image_answers_b64_in_its_output_format_and_size(sim_url, fmt, kind):
    answer = oai(sim_url).images.generate(
        model="gpt-image-1", prompt="a dot", size="1536x1024", output_format=fmt
    )
    (image,) = answer.data
    assert image.url is None and (picture(image.b64_json).format, picture(image.b64_json).size) == (
        kind,
        (1536, 1024),
    )
    assert (answer.output_format, answer.size) == (fmt, "1536x1024")
    assert answer.usage.output_tokens == 272


def test_dall_e_answers_urls_and_each_family_keeps_its_sizes(sim_url):
    client = oai(sim_url)
    linked = client.images.generate(model="dall-e-3", prompt="a dot", size="1792x1024")
    assert linked.data[0].b64_json is None and linked.data[0].revised_prompt == "a dot"
    fetched = httpx.get(linked.data[0].url)
    assert Image.open(io.BytesIO(fetched.content)).size == (1792, 1024)
    small = client.images.generate(
        model="dall-e-2", prompt="a dot", size="256x256", response_format="b64_json", n=3
    )
    assert [picture(i.b64_json).size for i in small.data] == [(256, 256)] * 3
    with pytest.raises(openai.BadRequestError) as size:
        client.images.generate(model="gpt-image-1", prompt="a dot", size="1792x1024")
    assert size.value.body["param"] == "size"
    with pytest.raises(openai.BadRequestError) as fmt:
        client.images.generate(model="dall-e-3", prompt="a dot", output_format="jpeg")
    assert fmt.value.body["code"] == "unknown_parameter"
    with pytest.raises(openai.BadRequestError):
        client.images.generate(model="dall-e-3", prompt="a dot", n=2)


def test_image_edits_take_multipart_images(sim_url):
    client = oai(sim_url)
    edited = client.images.edit(
        model="gpt-image-1",
        image=[("a.png", png(300, 200), "image/png"), ("b.png", png(300, 200), "image/png")],
        prompt="make it red",
        output_format="webp",
    )
    assert (picture(edited.data[0].b64_json).format, picture(edited.data[0].b64_json).size) == (
        "WEBP",
        (300, 200),
    )
    assert edited.usage.input_tokens_details.image_tokens == 2 * 272
    sized = client.images.edit(
        model="gpt-image-1", image=("a.png", png(64, 64), "image/png"), prompt="x", size="1024x1536"
    )
    assert picture(sized.data[0].b64_json).size == (1024, 1536)
    with pytest.raises(openai.BadRequestError) as broken:
        client.images.edit(model="gpt-image-1", image=("a.png", b"not a picture", "image/png"), prompt="x")
    assert broken.value.body["code"] == "invalid_image"


# Gemini image output


def test_gemini_image_model_answers_inline_png_and_usage(sim_url):
    client = genai.Client(api_key="x", http_options=types.HttpOptions(base_url=sim_url))
    config = types.GenerateContentConfig(image_config=types.ImageConfig(aspect_ratio="16:9"))
    answer = client.models.generate_content(
        model="gemini-2.5-flash-image", contents="a red fox", config=config
    )
    text, image = answer.candidates[0].content.parts
    assert text.text and image.inline_data.mime_type == "image/png"
    assert Image.open(io.BytesIO(image.inline_data.data)).size == (1344, 768)
    usage = answer.usage_metadata
    assert [(d.modality, d.token_count) for d in usage.candidates_tokens_details] == [
        (types.MediaModality.IMAGE, 1290),
        (types.MediaModality.TEXT, len(text.text.split())),
    ]
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    only = types.GenerateContentConfig(response_modalities=["IMAGE"])
    (alone,) = (
        client.models.generate_content(model="imagen-t2i", contents="x", config=only)
        .candidates[0]
        .content.parts
    )
    assert Image.open(io.BytesIO(alone.inline_data.data)).size == (1024, 1024)
    streamed = list(
        client.models.generate_content_stream(model="gemini-2.5-flash-image", contents="a red fox")
    )
    assert streamed[-1].candidates[0].content.parts[0].inline_data.mime_type == "image/png"


# OpenAI audio


def test_speech_is_real_audio_as_long_as_its_text(sim_url):
    client = oai(sim_url)
    text = "The quick brown fox jumps over the lazy dog."
    wav = client.audio.speech.create(
        model="gpt-4o-mini-tts", voice="alloy", input=text, response_format="wav"
    ).content
    with wave.open(io.BytesIO(wav)) as reader:
        assert reader.getframerate() == 24000 and reader.getnframes() / 24000 == pytest.approx(
            media.speech_seconds(text)
        )
    mp3 = client.audio.speech.create(model="tts-1", voice="alloy", input=text)
    assert mp3.response.headers["content-type"] == "audio/mpeg"
    assert seconds_of(mp3.content) == pytest.approx(media.speech_seconds(text), abs=0.1)
    longer = client.audio.speech.create(
        model="tts-1", voice="alloy", input=text * 3, response_format="flac"
    ).content
    assert seconds_of(longer) == pytest.approx(3 * seconds_of(mp3.content), rel=0.05)
    with pytest.raises(openai.BadRequestError):
        client.audio.speech.create(model="tts-1", voice="alloy", input="")


def test_transcriptions_read_the_real_duration(sim_url):
    client = oai(sim_url)
    wav = media.speech("One two three four five six seven eight nine ten eleven twelve.", "wav")
    seconds, segments = transcribe(wav)
    plain = client.audio.transcriptions.create(model="whisper-1", file=("a.wav", wav, "audio/wav"))
    assert plain.text == " ".join(s.text for s in segments) and plain.text.startswith("Simulated")
    verbose = client.audio.transcriptions.create(
        model="whisper-1",
        file=("a.wav", wav, "audio/wav"),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert verbose.duration == pytest.approx(seconds) and verbose.segments[-1].end == pytest.approx(
        seconds, abs=0.01
    )
    assert len(verbose.words) == len(plain.text.split())
    tokens = client.audio.transcriptions.create(model="gpt-4o-transcribe", file=("a.wav", wav, "audio/wav"))
    assert tokens.text == plain.text and tokens.usage.type == "tokens"
    text = client.audio.transcriptions.create(
        model="whisper-1", file=("a.wav", wav, "audio/wav"), response_format="srt"
    )
    assert text.startswith("1\n00:00:00,000 --> ")
    with pytest.raises(openai.BadRequestError):
        client.audio.transcriptions.create(
            model="gpt-4o-transcribe", file=("a.wav", wav, "audio/wav"), response_format="verbose_json"
        )


# Fish Audio


@pytest.mark.parametrize("fmt", ["wav", "mp3", "opus", "pcm"])
def test_fish_tts_streams_real_audio(sim_url, fmt):
    text = "Hello from the fish simulator."
    with httpx.stream(
        "POST",
        f"{sim_url}/fish/v1/tts",
        headers={**FISH, "model": "s2-pro"},
        json={"text": text, "format": fmt},
    ) as answer:
        assert answer.status_code == 200 and answer.headers["transfer-encoding"] == "chunked"
        data = answer.read()
    expected = media.speech_seconds(text)
    if fmt == "pcm":
        assert len(data) == round(expected * 44100) * 2
    else:
        assert seconds_of(data) == pytest.approx(expected, abs=0.1)


def test_fish_asr_and_voice_models(sim_url):
    wav = media.speech("A sample of my voice for cloning.", "wav", 16000)
    heard = httpx.post(
        f"{sim_url}/fish/v1/asr",
        headers=FISH,
        files={"audio": ("a.wav", wav, "audio/wav")},
        data={"language": "en"},
    )
    seconds, segments = transcribe(wav)
    assert heard.json() == {
        "text": " ".join(s.text for s in segments),
        "duration": round(seconds, 3),
        "segments": [{"text": s.text, "start": s.start, "end": s.end} for s in segments],
        "language_code": "en",
        "language": "English",
    }
    created = httpx.post(
        f"{sim_url}/fish/model",
        headers=FISH,
        files=[("voices", ("a.wav", wav, "audio/wav")), ("voices", ("b.wav", wav, "audio/wav"))],
        data={
            "type": "tts",
            "title": "My voice",
            "train_mode": "fast",
            "visibility": "private",
            "texts": ["one", "two"],
        },
    )
    voice = created.json()
    assert (
        created.status_code == 201
        and voice["state"] == "trained"
        and [s["text"] for s in voice["samples"]] == ["one", "two"]
    )
    assert httpx.get(f"{sim_url}/fish/model/{voice['_id']}", headers=FISH).json() == voice
    spoken = httpx.post(
        f"{sim_url}/fish/v1/tts", headers=FISH, json={"text": "hi", "reference_id": voice["_id"]}
    )
    assert spoken.status_code == 200 and spoken.headers["content-type"] == "audio/mpeg"
    assert httpx.delete(f"{sim_url}/fish/model/{voice['_id']}", headers=FISH).status_code == 200
    assert httpx.get(f"{sim_url}/fish/model/{voice['_id']}", headers=FISH).status_code == 404


def test_fish_errors(sim_url):
    missing = httpx.post(f"{sim_url}/fish/v1/tts", headers=FISH, json={"format": "wav"})
    assert missing.status_code == 422 and missing.json()[0]["loc"] == ["body", "text"]
    broke = httpx.post(f"{sim_url}/fish/v1/tts", headers=FISH, json={"text": "hi", "sim": {"fail": 402}})
    assert broke.status_code == 402 and broke.json() == {"status": 402, "message": "Simulated failure 402."}
    anonymous = httpx.post(f"{sim_url}/fish/v1/tts", json={"text": "hi"}, headers={"x-api-key": "k"})
    assert anonymous.status_code == 401 and anonymous.json()["status"] == 401, "Fish takes only a Bearer key"
    public = httpx.post(
        f"{sim_url}/fish/model",
        headers=FISH,
        files={"voices": ("a.wav", media.speech("x", "wav"), "audio/wav")},
        data={"type": "tts", "title": "t", "train_mode": "fast"},
    )
    assert public.status_code == 422 and public.json()[0]["loc"] == ["body", "cover_image"]


def test_media_urls_regenerate_and_refuse_nonsense(sim_url):
    first = httpx.get(f"{sim_url}/_sim/media/image.webp", params={"width": 33, "height": 21, "seed": "s"})
    again = httpx.get(f"{sim_url}/_sim/media/image.webp", params={"width": 33, "height": 21, "seed": "s"})
    assert first.content == again.content and Image.open(io.BytesIO(first.content)).size == (33, 21)
    assert httpx.get(f"{sim_url}/_sim/media/image.gif", params={"width": 1, "height": 1}).status_code == 404
    assert (
        httpx.get(f"{sim_url}/_sim/media/image.png", params={"width": 99999, "height": 1}).status_code == 404
    )
