"""URL routes: the admin, login pages and the backfill dashboard."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from backfill.metrics import metrics_view

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="backfill:dashboard")),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("backfill/", include("backfill.urls")),
    path("metrics", metrics_view, name="metrics"),
]
