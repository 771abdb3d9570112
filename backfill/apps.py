from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class BackfillConfig(AppConfig):
    name = "backfill"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Every installed app's `backfills.py` registers its definitions.
        autodiscover_modules("backfills")
        from backfill.schema import checks  # noqa: F401  (registers the deploy-time check)
