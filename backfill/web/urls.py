from django.urls import path

from backfill.web import views

app_name = "backfill"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("fragment/", views.dashboard_fragment, name="dashboard-fragment"),
    path("start/<str:name>/", views.start, name="start"),
    path("jobs/<int:pk>/", views.job_detail, name="job"),
    path("jobs/<int:pk>/fragment/", views.job_fragment, name="job-fragment"),
    path("jobs/<int:pk>/<str:action>/", views.act, name="act"),
    path("api/jobs/", views.api_jobs, name="api-jobs"),
    path("api/jobs/<int:pk>/", views.api_job, name="api-job"),
]
