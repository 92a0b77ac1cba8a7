from django.apps import AppConfig


class GpuConfig(AppConfig):
    name = "gpu"
    verbose_name = "GPU jobs and storage"

    def ready(self) -> None:
        # The model API is served ahead of Django (hypereal.asgi): these join the gateway's route table.
        from gateway.app import route_add, route_add_pattern
        from gpu import files_api as api

        file = r"(?:/api)?/v1/storage/(?P<file_id>[^/]+)"
        route_add("/storage", {"GET": api.files_list, "POST": api.file_upload})
        route_add("/storage/uploads", {"POST": api.upload_create})
        route_add_pattern(file, {"GET": api.file_retrieve, "DELETE": api.file_delete})
        route_add_pattern(file + "/content", {"GET": api.file_content})
        route_add_pattern(file + "/complete", {"POST": api.upload_complete})
        route_add_pattern(file + "/upload", {"PUT": api.upload_receive})
        # Anything else under /storage answers a JSON 404 rather than falling through to Django's HTML one.
        route_add_pattern(r"(?:/api)?/v1/storage/.*",
                          dict.fromkeys(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"), api.unknown_path))
