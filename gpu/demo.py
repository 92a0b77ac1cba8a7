"""The GPU half of the demo (`make run`): the simulator as a RunPod account, two hosted GPU models and a
ComfyUI deployment for the demo organization.

Endpoint ids are fixed: the simulator serves an endpoint it was never told about as what its id names
(sdxl → images, wan → video, comfyui → workflows), so the demo works whether or not it was running when
the demo was set up.
"""

from gpu.models import ComputeProvider, Deployment, GpuModel

DEMO_COMPUTE = "simulator"
SDXL_PRICE, WAN_PER_SECOND = 5_000_000, 2_000_000  # micro-credits: 5 credits a call, 2 a GPU-second
DEMO_DEPLOYMENT = "comfyui-demo"


def gpu_models_demo_install(*, simulator_url: str) -> ComputeProvider:
    compute, _ = ComputeProvider.objects.update_or_create(name=DEMO_COMPUTE, defaults={
        "queue_url": f"{simulator_url}/runpod/v2", "rest_url": f"{simulator_url}/runpod/rest/v1", "enabled": True})
    if not compute.api_key:
        compute.api_key = "rp-simulator"  # the simulator accepts any key; RunPod's must be set in admin
        compute.save(update_fields=["api_key_encrypted"])
    GpuModel.objects.update_or_create(slug="sdxl", defaults={
        "name": "Stable Diffusion XL", "description": "Text to image, answered inline.",
        "hardware": "NVIDIA RTX 4090", "price_unit": GpuModel.PriceUnit.CALL, "unit_price": SDXL_PRICE,
        "max_seconds": 60, "sync": True, "compute": compute, "endpoint_id": "sdxl-demo"})
    GpuModel.objects.update_or_create(slug="wan-video", defaults={
        "name": "Wan 2.2 video", "description": "Text to video, queued; billed per GPU-second.",
        "hardware": "NVIDIA A100 80GB", "price_unit": GpuModel.PriceUnit.SECOND, "unit_price": WAN_PER_SECOND,
        "max_seconds": 300, "sync": False, "compute": compute, "endpoint_id": "wan-video-demo"})
    return compute


def gpu_demo_install(sender, *, organization, simulator_url: str, **signal) -> None:
    """bootstrap_demo's demo_installed receiver."""
    compute = gpu_models_demo_install(simulator_url=simulator_url)
    Deployment.objects.get_or_create(organization=organization, slug=DEMO_DEPLOYMENT, defaults={
        "name": "ComfyUI (demo)", "docker_image": "runpod/worker-comfyui:5.5.0-base", "gpu_types": ["ADA_24"],
        "workers_max": 1, "max_seconds": 300, "compute": compute, "endpoint_id": DEMO_DEPLOYMENT})
