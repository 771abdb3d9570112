"""The dashboard, its JSON API and its actions: by permission, every action audited.

Views call the service functions, like the CLI does; they never change jobs
themselves. Anonymous visitors are sent to the login page, signed-in users
without the permission an action needs get 403 (`permissions.py` says which);
buttons they may not use are not shown.
"""

from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import NON_FIELD_ERRORS
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from backfill import conf
from backfill.engine import service
from backfill.engine.lifecycle import PEOPLE_ACTIONS, Action, actions_for, refusal
from backfill.engine.options import JobOptions, bounds, budget_bounds
from backfill.engine.progress import job_progress
from backfill.errors import BackfillError
from backfill.models import Event, Job, JobStatus, Sample
from backfill.registry import Definition, all_definitions, get_definition
from backfill.web import charts, present
from backfill.web.permissions import (
    CHANGE,
    VIEW,
    allowed_actions,
    for_caller,
    may,
    may_act,
    permission_required,
    token_or_viewer,
)


def actor(request: HttpRequest) -> str:
    return f"web:{request.user.get_username()}"


def plain(text: str, status: int) -> HttpResponse:
    """A refusal in plain text: it may echo what the caller sent, never as HTML."""
    return HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")


class StartForm(forms.Form):
    """The job options; `JobOptions.build` enforces the bounds the inputs show as min/max.

    Every field has a default that suits nearly every job, so the page folds
    them away and states the defaults in words (`present.defaults_in_words`).
    """

    # The fieldsets of the folded options, in order.
    GROUPS = (
        ("Workers and batches", ("concurrency", "batch_size", "pause_ms")),
        (
            "Pacing by the database's health",
            (
                "pace",
                "latency_ratio",
                "replica_lag_seconds",
                "transaction_age_seconds",
                "wal_mb_per_second",
            ),
        ),
    )
    HELP = {
        "concurrency": "workers writing at once",
        "batch_size": "rows per batch at first; it adapts to the batch time",
        "pause_ms": "the shortest pause between a worker's batches",
        "pace": "auto: slow down when the database is under strain",
        "latency_ratio": "the app's commit latency over its baseline",
        "replica_lag_seconds": "how far a standby may fall behind",
        "transaction_age_seconds": "the oldest transaction open on the database",
        "wal_mb_per_second": "write-ahead log written per second; 0: no budget",
    }

    batch_size = forms.IntegerField()
    concurrency = forms.IntegerField()
    pause_ms = forms.IntegerField()
    # Left out of a request: the settings' defaults.
    pace = forms.ChoiceField(
        choices=[("auto", "auto"), ("off", "off")], required=False, label="pacing"
    )
    latency_ratio = forms.FloatField(required=False)
    replica_lag_seconds = forms.FloatField(required=False)
    transaction_age_seconds = forms.FloatField(required=False)
    wal_mb_per_second = forms.FloatField(required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, bound in bounds().items():
            field = self.fields[name]
            assert isinstance(field, forms.IntegerField)
            field.label = bound.label
            field.widget.attrs.update({"min": bound.low, "max": bound.high})
            field.initial = bound.default
        self.fields["pace"].initial = "auto" if conf.current().pace else "off"
        for name, budget in budget_bounds().items():
            field = self.fields[name]
            field.label = budget.label
            low = 0 if budget.zero_is_none else budget.low
            field.widget.attrs.update({"min": low, "max": budget.high, "step": "any"})
            field.initial = budget.default
        for name, text in self.HELP.items():
            self.fields[name].help_text = text

    def groups(self) -> list[tuple[str, list[forms.BoundField]]]:
        return [(legend, [self[name] for name in names]) for legend, names in self.GROUPS]

    def named_errors(self) -> str:
        """Each error with the field it is about ("batch size: Enter a whole number.");
        the options' own checks name their field already."""
        return "; ".join(
            str(error) if name == NON_FIELD_ERRORS else f"{self[name].label}: {error}"
            for name, errors in self.errors.items()
            for error in errors
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not self.errors:
            try:
                self.options = JobOptions.build(
                    data["batch_size"],
                    data["concurrency"],
                    data["pause_ms"],
                    pace=data["pace"] == "auto" if data.get("pace") else None,
                    budgets={name: data.get(name) for name in budget_bounds()},
                )
            except BackfillError as exc:
                raise forms.ValidationError(str(exc)) from exc
        return data


@dataclass(frozen=True)
class Button:
    label: str
    confirm: str = ""


# How each action people may take looks on the page; which ones show is
# `actions_for(job)`'s answer, never the template's.
BUTTONS: dict[Action, Button] = {
    Action.PAUSE: Button("Pause"),
    Action.RESUME: Button("Resume"),
    Action.CANCEL: Button("Cancel", "Cancel this job? Rows already filled stay filled."),
    Action.RETRY: Button("Retry"),
    Action.REVERT: Button("Revert", "Undo everything this job filled?"),
}


def dashboard_context(request: HttpRequest) -> dict[str, Any]:
    jobs = list(Job.objects.order_by("-id").prefetch_related("slices")[:100])
    return {
        "definitions": [(d, Job.objects.latest_for(d.name)) for d in all_definitions()],
        "rows": [(job, job_progress(job)) for job in jobs],
        "may_start": may(request.user, CHANGE),
        "form": StartForm(auto_id=False),
        "defaults": present.defaults_in_words(),
        "live": any(is_moving(job) for job in jobs),
    }


@require_GET
@permission_required(VIEW)
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "backfill/dashboard.html", dashboard_context(request))


@require_GET
@permission_required(VIEW)
def dashboard_fragment(request: HttpRequest) -> HttpResponse:
    return render(request, "backfill/_jobs.html", dashboard_context(request))


def is_moving(job: Job) -> bool:
    """Worth refreshing every second: work is under way or expected shortly.

    A paused job waits for a person; its page is fresh until they act, and
    acting reloads it.
    """
    return job.is_active and job.status != JobStatus.PAUSED


def job_context(request: HttpRequest, job: Job) -> dict[str, Any]:
    samples = list(
        Sample.objects.filter(job=job)
        .order_by("id")
        .values_list("at", "rows", "batch_size", "pause_ms", "limit")
    )
    rate = charts.bucketed_rate([(at, rows) for at, rows, *_ in samples])
    recent = samples[-300:]
    sizes = [charts.Point(at, size) for at, _, size, *_ in recent]
    pauses = [charts.Point(at, pause) for at, _, _, pause, _ in recent]
    spans = charts.limit_spans([(at, limit) for at, *_, limit in recent])
    progress = job_progress(job)
    return {
        "job": job,
        "progress": progress,
        **present.job_words(job, progress),
        "slice_rows": present.slice_rows(progress, definition_of(job)),
        "throughput_svg": charts.line_chart(rate, "Throughput", "rows/s"),
        "batch_size_svg": charts.line_chart(sizes, "Batch size", "rows per batch"),
        "pace_svg": charts.pace_chart(pauses, spans, job.pace),
        "errors": [s for s in job.slices.order_by("number") if s.last_error],
        "events": Event.objects.filter(job=job).order_by("-id")[:50],
        "live": is_moving(job),
        "buttons": [
            (action, BUTTONS[action]) for action in allowed_actions(request.user, actions_for(job))
        ],
    }


def definition_of(job: Job) -> Definition | None:
    try:
        return get_definition(job.definition)
    except BackfillError:
        return None  # a job of a definition since removed from the code


@require_GET
@permission_required(VIEW)
def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job, pk=pk)
    return render(request, "backfill/job.html", job_context(request, job))


@require_GET
@permission_required(VIEW)
def job_fragment(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job, pk=pk)
    return render(request, "backfill/_job.html", job_context(request, job))


@require_POST
@permission_required(VIEW)
def start(request: HttpRequest, name: str) -> HttpResponse:
    # As every other action: view_job to reach it, then the action's own permission.
    if not may_act(request.user, Action.START):
        return plain("you may not start jobs", 403)
    try:
        get_definition(name)
    except BackfillError as exc:
        return plain(str(exc), 400)
    form = StartForm(request.POST)
    if not form.is_valid():
        return plain(f"not started: {form.named_errors()}", 400)
    try:
        job = service.start(name, actor(request), form.options)
    except BackfillError as exc:
        messages.error(request, str(exc))
        return redirect("backfill:dashboard")
    messages.success(request, f"Started {name} job #{job.pk}.")
    return redirect("backfill:job", pk=job.pk)


@require_POST
@permission_required(VIEW)
def act(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    job = get_object_or_404(Job, pk=pk)
    if action not in PEOPLE_ACTIONS:
        return plain(f"unknown action {action!r}", 400)
    if not may_act(request.user, Action(action)):
        return plain(f"you may not {action} jobs", 403)
    reason = refusal(job, Action(action))
    if reason is not None:
        return plain(f"cannot {action} job #{job.pk}: {reason}", 409)
    try:
        service.ACTIONS[Action(action)](job.definition, actor(request), job)
    except BackfillError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{action.capitalize()}: {job.definition} job #{job.pk}.")
    return redirect(reverse("backfill:job", kwargs={"pk": job.pk}))


@require_GET
@token_or_viewer
def api_jobs(request: HttpRequest) -> JsonResponse:
    jobs = Job.objects.order_by("-id").prefetch_related("slices")[:100]
    return JsonResponse(
        {"jobs": [for_caller(request, job_progress(job).as_dict()) for job in jobs]}
    )


@require_GET
@token_or_viewer
def api_job(request: HttpRequest, pk: int) -> JsonResponse:
    job = Job.objects.filter(pk=pk).first()
    if job is None:
        return JsonResponse({"error": f"no job {pk}"}, status=404)
    return JsonResponse(for_caller(request, job_progress(job).as_dict()))
