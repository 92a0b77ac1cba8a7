from django.urls import path

from apikeys import views
from apikeys.api.views import ApiKeyDetailApi, ApiKeyListApi

urlpatterns = [
    path("api/api-keys", ApiKeyListApi.as_view()),
    path("api/api-keys/<int:key_id>", ApiKeyDetailApi.as_view()),
    path("keys", views.keys_page, name="keys"),
    path("keys/<int:key_id>/revoke", views.key_revoke),
]
