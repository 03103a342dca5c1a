"""One benchmark figure with its same-run baseline and target."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Result:
    name: str
    value: float
    unit: str
    baseline: float | None = None  # the baseline's figure, same run, same unit
    target: str = ""  # human-readable target, e.g. "ratio <= 1.3"
    met: bool | None = None  # whether the target was met (None: report only)
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if not self.baseline:
            return None
        return self.value / self.baseline

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}

    @staticmethod
    def table(results: list[Result]) -> str:
        header = ("benchmark", "mevstack", "baseline", "ratio", "target", "met")
        rows = [header]
        for r in results:
            rows.append(
                (
                    r.name,
                    f"{r.value:.4g} {r.unit}",
                    "" if r.baseline is None else f"{r.baseline:.4g} {r.unit}",
                    "" if r.ratio is None else f"{r.ratio:.3g}",
                    r.target,
                    {None: "", True: "yes", False: "NO"}[r.met],
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)
