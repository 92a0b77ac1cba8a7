from django.urls import path

from gpu import views

urlpatterns = [
    path("jobs", views.jobs_page, name="jobs"),
    path("jobs/<str:job_id>", views.job_page, name="job"),
]
