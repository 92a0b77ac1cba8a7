from django.urls import path

from usage import views
from usage.api.views import UsageApi, UsageDetailApi, UsageExportApi

urlpatterns = [
    path("api/api-usage", UsageApi.as_view()),
    path("api/api-usage/export", UsageExportApi.as_view()),
    path("api/api-usage/<str:request_id>", UsageDetailApi.as_view()),
    path("usage", views.usage_page, name="usage"),
    path("usage/logs", views.usage_logs),
    path("usage/requests/<str:request_id>", views.usage_request),
]
