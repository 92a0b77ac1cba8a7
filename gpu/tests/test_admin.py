"""Operators see stored files in Django admin; deleting one there deletes its object too."""

import pytest
from django.urls import reverse

from gpu.models import StoredFile
from gpu.storage import stored_file_save
from orgs.services import organization_create, user_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client):
    admin = user_create(email="ops@example.test", password="pw", is_staff=True, is_superuser=True)
    client.force_login(admin)
    return admin


@pytest.fixture
def stored(operator, settings, tmp_path):
    settings.STORAGES = {**settings.STORAGES, "hypereal": {
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path)}}}
    org = organization_create(name="Files", owner=operator)
    return [stored_file_save(organization_id=org.pk, kind="input", content=text.encode(), filename=f"{text}.txt",
                             content_type="text/plain") for text in ("first", "second")]


def test_changelist_search_and_detail_render(client, stored):
    url = reverse("admin:gpu_storedfile_changelist")
    page = client.get(url)
    assert page.status_code == 200 and stored[0].public_id in page.content.decode()
    assert client.get(url, {"q": "first", "kind__exact": "input"}).status_code == 200
    assert client.get(reverse("admin:gpu_storedfile_change", args=[stored[0].pk])).status_code == 200


def test_deleting_in_admin_deletes_the_objects(client, stored, tmp_path):
    paths = [tmp_path / f.storage_name for f in stored]
    assert all(p.exists() for p in paths)
    client.post(reverse("admin:gpu_storedfile_changelist"),
                {"action": "delete_selected", "_selected_action": [stored[0].pk], "post": "yes"})
    client.post(reverse("admin:gpu_storedfile_delete", args=[stored[1].pk]), {"post": "yes"})
    assert not StoredFile.objects.exists()
    assert not any(p.exists() for p in paths)
