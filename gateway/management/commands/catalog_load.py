from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from gateway.catalog_file import CATALOG_PATH, CatalogFileError, catalog_file_apply, catalog_file_read


class DryRun(Exception):
    """Raised inside the transaction so that a dry run writes nothing."""


class Command(BaseCommand):
    help = ("Load the catalog file into the database, idempotently, and show what changed. Production by default "
            "(the providers' real base URLs, keys from their api_key_env variables); --simulator for the demo.")

    def add_arguments(self, parser):
        parser.add_argument("--file", type=Path, default=CATALOG_PATH, help=f"Default: {CATALOG_PATH}.")
        parser.add_argument("--simulator", metavar="URL",
                            help="Serve every model from the simulator at URL (demo models included).")
        parser.add_argument("--force", action="store_true",
                            help="Overwrite fields edited in admin with the file's values (default: keep them).")
        parser.add_argument("--dry-run", action="store_true", help="Show the changes without making them.")

    def handle(self, *args, file: Path, simulator: str | None, force: bool, dry_run: bool, **opts):
        try:
            catalog_file = catalog_file_read(file)
        except (CatalogFileError, OSError) as exc:
            raise CommandError(str(exc)) from None
        try:
            with transaction.atomic():
                changes = catalog_file_apply(catalog_file, simulator_url=simulator, force=force)
                if dry_run:
                    raise DryRun
        except DryRun:
            pass
        for change in changes:
            self.stdout.write(str(change))
        counts = {action: sum(c.action == action for c in changes) for action in ("added", "updated", "kept",
                                                                                 "disabled")}
        touched = {c.subject for c in changes if c.subject.startswith("model ")}
        unchanged = sum(1 for spec in catalog_file.models.values() if simulator or not spec.demo) - len(touched)
        summary = ", ".join(f"{n} {action}" for action, n in counts.items())
        dry = " (dry run: nothing written)" if dry_run else ""
        self.stderr.write(f"Catalog {catalog_file.version} from {file}{dry}: {summary}; {unchanged} models unchanged."
                          + (" Kept fields were edited in admin; --force takes the file's values."
                             if counts["kept"] else ""))
