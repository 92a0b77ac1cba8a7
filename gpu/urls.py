from django.urls import path

from gpu import views
from gpu.api.views import DeploymentDetailApi, DeploymentListApi

urlpatterns = [
    path("v1/deployments", DeploymentListApi.as_view()),
    path("api/v1/deployments", DeploymentListApi.as_view()),
    path("v1/deployments/<slug:slug>", DeploymentDetailApi.as_view()),
    path("api/v1/deployments/<slug:slug>", DeploymentDetailApi.as_view()),
    path("gpu", views.gpu_models_page, name="gpu"),
    path("gpu-recommend", views.gpu_models_page),
    path("infra/deployments", views.deployments_page, name="deployments"),
    path("infra/deployments/new", views.deployments_page),
    path("infra/deployments/<slug:slug>", views.deployment_page, name="deployment"),
    path("jobs", views.jobs_page, name="jobs"),
    path("jobs/<str:job_id>", views.job_page, name="job"),
]
