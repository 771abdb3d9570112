"""What one run of the suite measured, as values, and their JSON form.

The model knows nothing of how runs are made or how results are shown, so a
results.json can be read back and rendered again (benchmarks.report) without
loading the machinery that runs the benchmarks.
"""

from dataclasses import asdict, dataclass, field
from typing import Any

from benchmarks.app_load import LoadReport
from benchmarks.contract_lock import ContractTimes
from benchmarks.schema_gaps import GapRun

# Derived from the other fields: written for readers of the JSON, never read back.
DERIVED = ("rows_per_second", "table_seconds")


@dataclass
class Run:
    """One approach on one copy of a table; filled in as the run goes (verified, loaded)."""

    label: str
    method: str
    table_rows: int
    rows: int
    seconds: float
    started_at: float  # wall clock; the app load is judged from here for `seconds`
    peak_memory_mb: float
    extrapolated: bool
    verification: dict[str, int] = field(default_factory=dict)
    correct: bool = False
    # Batches of the job that gave up waiting for a lock (S runs only).
    lock_timeouts: int = 0
    load: LoadReport | None = None
    throughput: list[tuple[float, float]] = field(default_factory=list)
    app_p99: list[tuple[float, float]] = field(default_factory=list)
    # What health-aware pacing did (S2auto): seconds throttled, batches per limiting signal.
    pace: dict[str, Any] | None = None
    # The app load alone on the run's own copy, in the seconds right before the run.
    alone: LoadReport | None = None
    # Seconds the job's batches took, summed over workers, from each batch's
    # sample (timed up to, not including, its commit); S runs of the cost shapes.
    batch_seconds: float | None = None

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def table_seconds(self) -> float:
        """Time for the whole table; measured, or extrapolated from a sample."""
        return self.table_rows / self.rows_per_second if self.rows_per_second else 0.0

    @property
    def approach(self) -> str:
        """What ran ("S2"), the same on every table it ran on."""
        return self.label.partition(" ")[0]

    @property
    def scenario(self) -> str:
        """The table it ran on ("skewed", "gap"...); empty for the main table under load."""
        return self.label.partition(" ")[2]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rows_per_second"] = round(self.rows_per_second, 1)
        data["table_seconds"] = round(self.table_seconds, 1)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Run":
        """A run as `as_dict` wrote it; results from before a field existed get its default."""
        fields = {k: v for k, v in data.items() if k not in DERIVED}
        fields["load"] = LoadReport(**fields["load"]) if fields["load"] else None
        fields["alone"] = LoadReport(**fields["alone"]) if fields.get("alone") else None
        fields["throughput"] = [tuple(p) for p in fields["throughput"]]
        fields["app_p99"] = [tuple(p) for p in fields["app_p99"]]
        return cls(**fields)


@dataclass
class Results:
    """Everything one run of the suite measured, on one machine."""

    machine: dict[str, Any]
    command: str
    reference: LoadReport
    runs: list[Run]
    scaling: list[Run]
    contracts: list[ContractTimes]
    schema_gaps: list[GapRun] = field(default_factory=list)

    def run(self, label: str) -> Run:
        return next(r for r in self.runs if r.label == label)

    def alone(self, run: Run) -> LoadReport:
        """What `run`'s app load is weighed against: the app alone right before it
        (results from before those windows were taken: the reference)."""
        return run.alone or self.reference

    def under_load(self) -> list[Run]:
        """The service's runs that the app's load ran through: those pacing is judged on."""
        return [r for r in self.runs if r.label.startswith("S") and r.load]

    def all_runs(self) -> list[Run]:
        return [*self.runs, *self.scaling]

    def as_dict(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "command": self.command,
            "reference_load": self.reference.as_dict(),
            "runs": [r.as_dict() for r in self.runs],
            "scaling": [r.as_dict() for r in self.scaling],
            "contract": [c.as_dict() for c in self.contracts],
            "schema_gaps": [g.as_dict() for g in self.schema_gaps],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Results":
        """Results as `as_dict` wrote them, to render them again without rerunning."""
        return cls(
            machine=data["machine"],
            command=data["command"],
            reference=LoadReport(**data["reference_load"]),
            runs=[Run.from_dict(r) for r in data["runs"]],
            scaling=[Run.from_dict(r) for r in data["scaling"]],
            contracts=[
                ContractTimes(**{**c, "steps": [tuple(s) for s in c["steps"]]})
                for c in data["contract"]
            ],
            schema_gaps=[GapRun(**g) for g in data.get("schema_gaps", [])],
        )
