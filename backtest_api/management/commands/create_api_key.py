"""Create an API key and print it once; only its hash is stored."""

from django.core.management.base import BaseCommand, CommandError

from backtest_api.models import api_key_create


class Command(BaseCommand):
    help = "Create an API key for the backtest API and print it (shown only this once)."

    def add_arguments(self, parser):
        parser.add_argument(
            "name", help="Who or what will use the key, e.g. 'alice-backtests'."
        )

    def handle(self, *args, name, **options):
        name = name.strip()
        if not name:
            raise CommandError("NAME must not be empty.")
        key, raw_key = api_key_create(name=name)
        self.stderr.write(
            f"Created API key {key.pk} '{key.name}'. Store it now: it is not shown again."
        )
        self.stdout.write(raw_key)
