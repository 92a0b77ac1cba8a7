"""The demo catalog: the catalog file (gateway/catalog.yaml) with every provider served by the simulator, so
every model works offline at its real price."""

from django.conf import settings
from django.dispatch import Signal

from gateway.catalog_file import catalog_file_apply, catalog_file_read
from gateway.models import CatalogModel

# Sent by bootstrap_demo once the demo organization and catalog exist (organization=, simulator_url=): the
# apps above the gateway add their part of the demo.
demo_installed = Signal()


def demo_catalog_install(*, simulator_url: str | None = None) -> list[CatalogModel]:
    catalog_file = catalog_file_read()
    catalog_file_apply(catalog_file, simulator_url=simulator_url or settings.HYPEREAL["SIMULATOR_URL"])
    return list(CatalogModel.objects.filter(public_id__in=catalog_file.models))
