"""Jobs in the Django admin: to look, not to edit.

Statuses, counters and leases move only through the engine (engine/lifecycle.py and the
runner); editing them by hand would break its invariants, so every field is
read-only, jobs are created from the CLI or the dashboard, and the list shows
which actions the lifecycle table allows there.
"""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from backfill.engine.lifecycle import actions_for
from backfill.models import Event, Job, Slice


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SliceInline(admin.TabularInline):  # type: ignore[type-arg]
    model = Slice
    fields = (
        "number",
        "status",
        "after",
        "high",
        "cursor",
        "rows_expected",
        "rows_done",
        "passes",
        "attempts",
        "last_error",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class EventInline(admin.TabularInline):  # type: ignore[type-arg]
    model = Event
    fields = ("at", "actor", "action", "from_status", "to_status", "detail")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "definition",
        "status",
        "rows_total",
        "created_by",
        "created_at",
        "finished_at",
        "allowed_actions",
    )
    list_filter = ("definition", "status")
    inlines = (SliceInline, EventInline)

    @admin.display(description="actions (CLI and dashboard)")
    def allowed_actions(self, job: Job) -> str:
        return ", ".join(actions_for(job)) or "none"


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ("at", "job", "actor", "action", "from_status", "to_status")
    list_filter = ("action",)
