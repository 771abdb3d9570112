"""The dashboard, its JSON API and its actions: staff only, every action audited.

Views call the service functions, like the CLI does; they never change jobs
themselves. Anonymous visitors are sent to the login page, signed-in users who
are not staff get 403.
"""

import functools
import hmac
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from backfill import charts, conf, service
from backfill.errors import BackfillError
from backfill.models import Event, Job, Sample
from backfill.progress import job_progress
from backfill.registry import all_definitions, get_definition

View = Callable[..., HttpResponse]


def staff_required(view: View) -> View:
    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not request.user.is_staff:
            raise PermissionDenied("staff only")
        return view(request, *args, **kwargs)

    return wrapped


def token_or_staff(view: View) -> View:
    """For monitoring systems: `Authorization: Bearer <BACKFILL_API_TOKEN>`, or a staff session."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        token = str(conf.get("BACKFILL_API_TOKEN") or "")
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if token and given and hmac.compare_digest(token, given):
            return view(request, *args, **kwargs)
        if request.user.is_authenticated and request.user.is_staff:
            return view(request, *args, **kwargs)
        return JsonResponse({"error": "staff session or API token required"}, status=403)

    return wrapped


def actor(request: HttpRequest) -> str:
    return f"web:{request.user.get_username()}"


class StartForm(forms.Form):
    batch_size = forms.IntegerField(min_value=1)
    concurrency = forms.IntegerField(min_value=1, max_value=64)
    pause_ms = forms.IntegerField(min_value=0, max_value=60_000, initial=0)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not self.errors:
            try:
                self.options = service.JobOptions.build(
                    data["batch_size"], data["concurrency"], data["pause_ms"]
                )
            except BackfillError as exc:
                raise forms.ValidationError(str(exc)) from exc
        return data


def start_form() -> StartForm:
    return StartForm(
        initial={
            "batch_size": conf.get_int("BACKFILL_BATCH_SIZE"),
            "concurrency": conf.get_int("BACKFILL_CONCURRENCY"),
            "pause_ms": conf.get_int("BACKFILL_PAUSE_MS"),
        }
    )


def dashboard_context() -> dict[str, Any]:
    latest = {}
    for definition in all_definitions():
        job = Job.objects.filter(definition=definition.name).order_by("-id").first()
        latest[definition.name] = job
    jobs = list(Job.objects.order_by("-id").prefetch_related("slices")[:100])
    return {
        "definitions": [(d, latest[d.name]) for d in all_definitions()],
        "rows": [(job, job_progress(job)) for job in jobs],
        "form": start_form(),
        "live": any(job.is_active for job in jobs),
    }


@require_GET
@staff_required
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "backfill/dashboard.html", dashboard_context())


@require_GET
@staff_required
def dashboard_fragment(request: HttpRequest) -> HttpResponse:
    return render(request, "backfill/_jobs.html", dashboard_context())


def job_context(job: Job) -> dict[str, Any]:
    samples = list(
        Sample.objects.filter(job=job).order_by("id").values_list("at", "rows", "batch_size")
    )
    rate = charts.bucketed_rate([(at, rows) for at, rows, _ in samples])
    sizes = [charts.Point(at, size) for at, _, size in samples[-300:]]
    return {
        "job": job,
        "progress": job_progress(job),
        "throughput_svg": charts.line_chart(rate, "rows/s"),
        "batch_size_svg": charts.line_chart(sizes, "rows per batch"),
        "errors": [s for s in job.slices.order_by("number") if s.last_error],
        "events": Event.objects.filter(job=job).order_by("-id")[:50],
        "live": job.is_active,
        "status_template": f"backfill/status/_{job.status}.html",
    }


@require_GET
@staff_required
def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return render(request, "backfill/job.html", job_context(get_object_or_404(Job, pk=pk)))


@require_GET
@staff_required
def job_fragment(request: HttpRequest, pk: int) -> HttpResponse:
    return render(request, "backfill/_job.html", job_context(get_object_or_404(Job, pk=pk)))


@require_POST
@staff_required
def start(request: HttpRequest, name: str) -> HttpResponse:
    try:
        get_definition(name)
    except BackfillError as exc:
        return HttpResponseBadRequest(str(exc))
    form = StartForm(request.POST)
    if not form.is_valid():
        errors = "; ".join(str(e) for field in form.errors.values() for e in field)
        return HttpResponseBadRequest(f"not started: {errors}")
    try:
        job = service.start(name, actor(request), form.options)
    except BackfillError as exc:
        messages.error(request, str(exc))
        return redirect("backfill:dashboard")
    messages.success(request, f"Started {name} job #{job.pk}.")
    return redirect("backfill:job", pk=job.pk)


ACTIONS: dict[str, Callable[[str, str], Any]] = {
    "pause": service.pause,
    "resume": service.resume,
    "cancel": service.cancel,
    "retry": service.retry,
    "revert": service.revert,
}


@require_POST
@staff_required
def act(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    job = get_object_or_404(Job, pk=pk)
    handler = ACTIONS.get(action)
    if handler is None:
        return HttpResponseBadRequest(f"unknown action {action!r}")
    latest = Job.objects.filter(definition=job.definition).order_by("-id").first()
    if latest is None or latest.pk != job.pk:
        return HttpResponse(f"job #{job.pk} is not the latest {job.definition} job", status=409)
    try:
        handler(job.definition, actor(request))
    except BackfillError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{action.capitalize()}: {job.definition} job #{job.pk}.")
    return redirect(reverse("backfill:job", kwargs={"pk": job.pk}))


@require_GET
@token_or_staff
def api_jobs(request: HttpRequest) -> JsonResponse:
    jobs = Job.objects.order_by("-id").prefetch_related("slices")[:100]
    return JsonResponse({"jobs": [job_progress(job).as_dict() for job in jobs]})


@require_GET
@token_or_staff
def api_job(request: HttpRequest, pk: int) -> JsonResponse:
    job = Job.objects.filter(pk=pk).first()
    if job is None:
        return JsonResponse({"error": f"no job {pk}"}, status=404)
    return JsonResponse(job_progress(job).as_dict())
