"""URL routes: the admin, log in and out, the backfill dashboard, metrics and health.

No password reset: its links are built from the request's Host header, and
staff accounts are managed with `createsuperuser` and the admin.
"""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from backfill.web.metrics import metrics_view
from project.health import healthz, readyz

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="backfill:dashboard")),
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("backfill/", include("backfill.web.urls")),
    path("metrics", metrics_view, name="metrics"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
]
