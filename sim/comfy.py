"""The runpod/worker-comfyui (≥ 5.0) handler: ``{workflow, images?}`` in, ``{images: [{filename, type, data}]}``
out, or the worker's ``{"error": ...}``, which RunPod reports as a FAILED job.

Each image is a real PNG as large as the workflow's EmptyLatentImage node asks (512×512 without one), as many
as its batch_size; its colours follow from the workflow, so the same graph gives the same pictures.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json

from sim import media

LATENT_NODES = ("EmptyLatentImage", "EmptySD3LatentImage")
DEFAULT_SIDE = 512


def run(job_input: dict) -> tuple[dict | None, str | None]:
    """The handler's output, or its error message."""
    workflow = job_input.get("workflow")
    if workflow is None:
        return None, "Missing 'workflow' parameter"
    if not isinstance(workflow, dict) or not all(isinstance(node, dict) for node in workflow.values()):
        return None, "Invalid 'workflow': expected an API-format graph of nodes"
    if (error := _check_images(job_input.get("images"))) is not None:
        return None, error
    latent = next(
        (n.get("inputs") or {} for n in workflow.values() if n.get("class_type") in LATENT_NODES), {}
    )
    width, height = int(latent.get("width", DEFAULT_SIDE)), int(latent.get("height", DEFAULT_SIDE))
    seed = hashlib.sha256(json.dumps(workflow, sort_keys=True).encode()).hexdigest()
    images = [
        {
            "filename": f"ComfyUI_{number:05}_.png",
            "type": "base64",
            "data": base64.b64encode(media.image(width, height, f"{seed}/{number}")).decode(),
        }
        for number in range(1, int(latent.get("batch_size", 1)) + 1)
    ]
    return {"images": images}, None


def _check_images(images: object) -> str | None:
    if images is None:
        return None
    if not isinstance(images, list) or not all(
        isinstance(i, dict) and {"name", "image"} <= i.keys() for i in images
    ):
        return "'images' must be a list of objects with 'name' and 'image' keys"
    for image in images:
        encoded = str(image["image"]).partition("base64,")[2] or str(
            image["image"]
        )  # a data URI's prefix is optional
        try:
            base64.b64decode(encoded, validate=True)
        except binascii.Error:
            return "Failed to upload one or more input images"
    return None
