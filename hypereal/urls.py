"""The site's routes: each app registers its own; the model API is served ahead of Django (hypereal.asgi)."""

from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path
from django.views.generic import RedirectView


def health(request):
    return JsonResponse({"ok": True})


urlpatterns = [
    path("admin/", admin.site.urls),
    path("health", health),
    path("", RedirectView.as_view(url="/usage")),
    path("", include("orgs.urls")),
    path("", include("apikeys.urls")),
    path("", include("billing.urls")),
    path("", include("usage.urls")),
    path("", include("gateway.urls")),
    path("", include("gpu.urls")),
    path("accounts/", include("allauth.urls")),
]
