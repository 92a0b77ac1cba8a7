from django.apps import AppConfig


class GpuConfig(AppConfig):
    name = "gpu"
    verbose_name = "Jobs and storage"

    def ready(self) -> None:
        # The model API is served ahead of Django (hypereal.asgi): these join the gateway's route table.
        from gateway.app import route_add, route_add_pattern, route_to_django
        from gpu import files_api as api
        from gpu import gpu_api, jobs_api

        file = r"(?:/api)?/v1/storage/(?P<file_id>[^/]+)"
        route_add("/storage", {"GET": api.files_list, "POST": api.file_upload})
        route_add("/storage/uploads", {"POST": api.upload_create})
        route_add_pattern(file, {"GET": api.file_retrieve, "DELETE": api.file_delete})
        route_add_pattern(file + "/content", {"GET": api.file_content})
        route_add_pattern(file + "/complete", {"POST": api.upload_complete})
        route_add_pattern(file + "/upload", {"PUT": api.upload_receive})
        job, video = r"(?:/api)?/v1/jobs/(?P<job_id>job_[^/]+)", r"(?:/api)?/v1/videos/(?P<job_id>job_[^/]+)"
        route_add("/videos/generate", {"POST": jobs_api.videos_generate})
        route_add("/videos", {"POST": jobs_api.videos_create})
        route_add_pattern(video, {"GET": jobs_api.video_retrieve})
        route_add_pattern(video + "/content", {"GET": jobs_api.video_content})
        route_add_pattern(job, {"GET": jobs_api.job_retrieve})
        route_add_pattern(job + "/content", {"GET": jobs_api.job_content})
        route_add_pattern(job + "/cancel", {"POST": jobs_api.job_cancel})
        route_add_pattern(r"(?:/api)?/v1/jobs/callbacks/(?P<token>[^/]+)", {"POST": jobs_api.job_callback})
        route_add_pattern(r"(?:/api)?/v1/gpu/jobs/(?P<job_id>job_[^/]+)", {"GET": gpu_api.gpu_job_retrieve})
        route_add_pattern(r"(?:/api)?/v1/gpu/run/(?P<slug>[^/]+)", {"POST": gpu_api.deployment_run})
        route_add_pattern(r"(?:/api)?/v1/gpu/(?P<slug>[^/]+)", {"POST": gpu_api.gpu_model_call})
        # Anything else under /storage answers a JSON 404 rather than falling through to Django's HTML one.
        route_add_pattern(r"(?:/api)?/v1/storage/.*",
                          dict.fromkeys(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"), api.unknown_path))
        route_to_django("/deployments")  # the management API's (gpu.api), with an API key or a session
        # Images and audio; /v1/models lists where each of their models is called.
        from gateway.info import MODEL_ENDPOINTS
        from gpu import media

        route_add("/images/generations", {"POST": media.images_generations})
        route_add("/images/generate", {"POST": media.images_generations})
        route_add("/images/edits", {"POST": media.images_edits})
        route_add("/audio/generations", {"POST": media.audio_generations})
        route_add("/audio/speech", {"POST": media.audio_speech})
        route_add("/audio/transcriptions", {"POST": media.audio_transcriptions})
        MODEL_ENDPOINTS.update(image=media.image_endpoints, audio=media.audio_endpoints)
        # `make run`: the demo's GPU models and ComfyUI deployment.
        from gateway.demo import demo_installed
        from gpu.demo import gpu_demo_install

        demo_installed.connect(gpu_demo_install, dispatch_uid="gpu-demo")
