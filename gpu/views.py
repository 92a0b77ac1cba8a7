"""The organization's jobs in the dashboard: a list, and each job with its outputs and timeline."""

from django.shortcuts import get_object_or_404, render

from gpu.models import Job
from gpu.storage import stored_file_get, stored_file_url
from orgs.pages import org_page, page_context


@org_page("usage:read")
def jobs_page(request):
    jobs = Job.objects.filter(organization=request.membership.organization).order_by("-created_at")[:100]
    return render(request, "gpu/jobs.html", page_context(request, "jobs", jobs=jobs))


@org_page("usage:read")
def job_page(request, job_id: str):
    organization = request.membership.organization
    job = get_object_or_404(Job.objects.select_related("provider", "hold"), organization=organization,
                            public_id=job_id)
    outputs = []
    for output in job.output.get("files", []):
        if file := stored_file_get(organization_id=organization.pk, file_id=output["id"]):
            outputs.append((file, stored_file_url(file)[0]))
    return render(request, "gpu/job.html", page_context(
        request, "jobs", job=job, outputs=outputs, events=job.events.order_by("created_at", "pk")))
