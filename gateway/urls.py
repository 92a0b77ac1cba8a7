from django.urls import path

from gateway import pages

urlpatterns = [
    path("playground", pages.playground_page, name="playground"),
    path("playground/token", pages.playground_token),
    path("models", pages.models_page, name="models"),
]
