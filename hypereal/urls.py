from django.contrib import admin
from django.http import JsonResponse
from django.urls import path

from apikeys.api.views import ApiKeyDetailApi, ApiKeyListApi


def health(request):
    return JsonResponse({"ok": True})


urlpatterns = [
    path("admin/", admin.site.urls),
    path("health", health),
    path("api/api-keys", ApiKeyListApi.as_view()),
    path("api/api-keys/<int:key_id>", ApiKeyDetailApi.as_view()),
]
