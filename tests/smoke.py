"""Start the embedded default exactly as `make run` does (SQLite, no Redis) and call it with the official SDKs."""

import base64
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from decimal import Decimal

import anthropic
import httpx
from openai import OpenAI

PNG = b"\x89PNG\r\n\x1a\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def media(root: str, key: str, client: OpenAI) -> Decimal:
    """An image, speech, a video job, a hosted GPU model and the demo's ComfyUI deployment, each checked to be
    real bytes of its kind; returns what they cost."""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=root, headers=headers, timeout=300) as http:  # jobs are waited for
        image = client.images.with_raw_response.generate(model="gpt-image-2", prompt="a chrome teapot",
                                                         size="1024x1024")
        assert base64.b64decode(image.parse().data[0].b64_json).startswith(PNG), "the image is a PNG"
        speech = client.audio.speech.with_raw_response.create(model="audio-tts", voice="en_male_calm",
                                                              input="Welcome.")
        assert speech.content[:3] == b"ID3" or speech.content[:2] == b"\xff\xfb", "the speech is an MP3"
        cost = Decimal(image.headers["x-hypereal-credits"]) + Decimal(speech.headers["x-hypereal-credits"])

        def finished(answer: httpx.Response) -> dict:
            """A job the request waited for: ended, and well."""
            assert answer.status_code == 200 and answer.json()["status"] == "succeeded", answer.text
            return answer.json()

        video = finished(http.post("/api/v1/videos/generate", json={
            "model": "sora-2", "prompt": "a white cube rotating", "duration": 4, "aspect_ratio": "16:9"}))
        assert http.get(video["contentUrl"]).content[4:8] == b"ftyp", "the video is an MP4"
        sdxl = finished(http.post("/v1/gpu/sdxl", json={"input": {"prompt": "a lighthouse at dawn"}}))
        assert httpx.get(sdxl["outputs"][0]).content.startswith(PNG), "the GPU model's output is a PNG"
        workflow = {"5": {"class_type": "EmptyLatentImage",
                          "inputs": {"width": 512, "height": 512, "batch_size": 1}}}
        comfy = finished(http.post("/v1/gpu/run/comfyui-demo",
                                   json={"input": {"workflow": workflow}, "sync": True}))
        assert comfy["output"]["images"], "the ComfyUI worker's images"
        return cost + sum(Decimal(job["creditsCharged"]) for job in (video, sdxl, comfy))


def main() -> int:
    port, sim_port = free_port(), free_port()
    var_dir = tempfile.mkdtemp(prefix="hypereal-smoke-")
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(PORT=str(port), SIM_PORT=str(sim_port), HYPEREAL_VAR_DIR=var_dir)
    proc = subprocess.Popen(["make", "--no-print-directory", "run"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    key = None
    try:
        for line in proc.stdout:
            sys.stdout.write(line)
            if match := re.search(r"API key:\s+(ck_\S+)", line):
                key = match.group(1)
            if "Press Ctrl-C" in line:
                break
        if key is None:
            print("smoke: make run never printed an API key", file=sys.stderr)
            return 1
        base = f"http://127.0.0.1:{port}/api/v1"
        before = Decimal(str(httpx.get(f"{base}/credits", headers={"Authorization": f"Bearer {key}"}).json()["balance"]))
        client = OpenAI(base_url=base, api_key=key)
        reply = client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "Hello"}])
        cost = Decimal(str(reply.usage.model_extra["cost"]))
        streamed = [c for c in client.chat.completions.create(
            model="gpt-5.5", stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "Stream it"}])]
        cost += Decimal(str(streamed[-1].usage.model_extra["cost"]))
        claude = anthropic.Anthropic(base_url=f"http://127.0.0.1:{port}/api", api_key=key)
        message = claude.messages.create(model="claude-sonnet-4-6", max_tokens=64,
                                         messages=[{"role": "user", "content": "Hello"}])
        cost += Decimal(str(message.usage.model_extra["cost"]))
        cost += media(f"http://127.0.0.1:{port}", key, client)
        after = Decimal(str(httpx.get(f"{base}/credits", headers={"Authorization": f"Bearer {key}"}).json()["balance"]))
        print(f"smoke: reply {reply.choices[0].message.content!r}, then a stream, a Claude message, an "
              f"image, speech, a video and two GPU jobs; cost {cost}, balance {before} -> {after}")
        assert reply.choices[0].message.content and message.content[0].text, "empty reply"
        assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices), "empty stream"
        assert cost > 0 and before - after == cost, "the balance must drop by exactly the reported costs"
        print("smoke: 1 passed, 0 failed")
        return 0
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
