"""Drift arithmetic for indirect monitoring: how a column is binned, counted and compared.

Pure Python and numpy, no Django, so the method can be read, tested and reproduced on its
own (docs/monitoring.md states it in words). The flow is:

    binning = binning_for(training_values)          # decided once, from the reference
    reference = counts(binning, training_values)    # per-bin counts: the stored result
    period = counts(binning, production_values)
    value = psi(reference, period)                  # expected = reference, actual = period
    status(value)                                   # "stable" | "warning" | "drift"

Per-bin counts, not PSI values, are what gets stored: they survive the purge of the raw
records, and periods merge by adding them (a month is the sum of its weeks), which PSI
values cannot do.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Kind = Literal["numeric", "categorical"]
Status = Literal["stable", "warning", "drift", "insufficient"]

KINDS: tuple[Kind, ...] = ("numeric", "categorical")
STATUSES: tuple[Status, ...] = ("stable", "warning", "drift", "insufficient")
DECILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
FLOOR = 1e-4
WARNING = 0.1
DRIFT = 0.25
DEFAULT_MINIMUM_ROWS = 100
MISSING_LABEL = "(missing)"
UNSEEN_LABEL = "(unseen)"


# -- values -------------------------------------------------------------------------------


def is_missing(value: Any) -> bool:
    """None and NaN (Python or numpy floats) are missing; every other value is a value."""
    return value is None or (isinstance(value, float | np.floating) and math.isnan(value))


def is_number(value: Any) -> bool:
    """A real number for binning: ints and floats (numpy's too), but not bools."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def category_of(value: Any) -> str:
    """The category a value stands for: its string form.

    A float with an integral value is written as the int, so a code column that pandas
    turned into floats (it does as soon as one value is missing) keeps its categories:
    1, 1.0 and "1" are one category.
    """
    if isinstance(value, float | np.floating) and math.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return str(value)


# -- binning ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Binning:
    """How one column is cut into bins; the missing bin is always last.

    numeric: right-closed bins (-inf, e1], (e1, e2], ..., (ek, +inf), then missing.
    categorical: one bin per reference category (sorted), one for unseen categories,
    then missing.
    """

    kind: Kind
    edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be 'numeric' or 'categorical', not {self.kind!r}")
        if self.kind == "numeric":
            if self.categories:
                raise ValueError("a numeric binning has edges, not categories")
            if not all(math.isfinite(edge) for edge in self.edges):
                raise ValueError(f"edges must be finite numbers, got {list(self.edges)}")
            if any(a >= b for a, b in zip(self.edges, self.edges[1:], strict=False)):
                raise ValueError(f"edges must be strictly increasing, got {list(self.edges)}")
        else:
            if self.edges:
                raise ValueError("a categorical binning has categories, not edges")
            if list(self.categories) != sorted(set(self.categories)):
                raise ValueError("categories must be distinct and sorted")

    @property
    def size(self) -> int:
        """The number of bins, the missing bin included."""
        if self.kind == "numeric":
            return len(self.edges) + 2
        return len(self.categories) + 2

    @property
    def below_minimum(self) -> bool:
        """Whether the first edge is the float just below the second (see _decile_edges):
        the first bin then holds the values below every reference value, the second the
        reference's minimum alone."""
        return len(self.edges) >= 2 and self.edges[0] == math.nextafter(self.edges[1], -math.inf)

    def labels(self) -> list[str]:
        """One label per bin, in bin order, for tables and charts."""
        if self.kind == "categorical":
            return [*self.categories, UNSEEN_LABEL, MISSING_LABEL]
        if self.below_minimum:
            shown = _edge_texts(self.edges[1:])
            lowest = shown[0]
            return [f"(-inf, {lowest})", lowest, *_intervals(shown)[1:], MISSING_LABEL]
        return [*_intervals(_edge_texts(self.edges)), MISSING_LABEL]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (finite floats and strings only, so strict JSON too)."""
        if self.kind == "numeric":
            return {"kind": "numeric", "edges": list(self.edges)}
        return {"kind": "categorical", "categories": list(self.categories)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Binning:
        """The binning that to_json() wrote; a malformed one is a ValueError."""
        kind = data.get("kind")
        if kind == "numeric":
            return cls("numeric", edges=tuple(float(edge) for edge in data.get("edges", ())))
        if kind == "categorical":
            return cls("categorical", categories=tuple(str(c) for c in data.get("categories", ())))
        raise ValueError(f"kind must be 'numeric' or 'categorical', not {kind!r}")


def _edge_texts(edges: Sequence[float]) -> list[str]:
    """The edges written with 6 significant digits, or as many more as it takes to tell
    them apart (epoch seconds differ in the 10th)."""
    for digits in range(6, 18):
        texts = [f"{edge:.{digits}g}" for edge in edges]
        if len(set(texts)) == len(texts):
            return texts
    return [repr(edge) for edge in edges]


def _intervals(texts: list[str]) -> list[str]:
    bounds = ["-inf", *texts, "+inf"]
    intervals = [f"({low}, {high}]" for low, high in zip(bounds, bounds[1:], strict=False)]
    intervals[-1] = intervals[-1][:-1] + ")"
    return intervals


def binning_for(reference_values: Iterable[Any], kind: Kind | None = None) -> Binning:
    """The binning of a column, decided from its reference (training) values.

    Without `kind`, the column is numeric when every non-missing value is a real number
    (bools excluded), categorical otherwise.
    """
    present = [value for value in reference_values if not is_missing(value)]
    if kind is None:
        kind = "numeric" if all(is_number(value) for value in present) else "categorical"
    if kind == "numeric":
        return Binning("numeric", edges=_decile_edges(_as_numbers(present)))
    if kind == "categorical":
        return Binning("categorical", categories=tuple(sorted({category_of(v) for v in present})))
    raise ValueError(f"kind must be 'numeric', 'categorical' or None, not {kind!r}")


def _decile_edges(values: np.ndarray) -> tuple[float, ...]:
    # Infinities still fall in the outer bins, but cannot make an edge: numpy's
    # interpolation between two of them is NaN.
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return ()
    edges = sorted({float(edge) for edge in np.quantile(finite, DECILES)})
    if edges[0] == float(finite.min()) and math.isfinite(math.nextafter(edges[0], -math.inf)):
        # The lowest decile is the minimum itself (a constant column, or one value holding
        # 10% or more): right-closed, its bin would also take every value below the
        # reference's range, and a column moving wholly below it would read as stable.
        # The float just below the minimum gives those values a bin of their own.
        edges.insert(0, math.nextafter(edges[0], -math.inf))
    return tuple(edges)


def _as_numbers(values: Sequence[Any]) -> np.ndarray:
    for value in values:
        if not is_number(value):
            raise ValueError(
                f"a numeric column holds {value!r} ({type(value).__name__}); "
                "bin it as categorical, or fix the preprocess that produced it"
            )
    return np.asarray(values, dtype=float)


# -- counts -------------------------------------------------------------------------------


def counts(binning: Binning, values: Iterable[Any]) -> list[int]:
    """How many values fall in each bin of `binning`, the missing bin last."""
    if binning.kind == "numeric":
        array = values if isinstance(values, np.ndarray) else None
        if array is not None and array.dtype.kind in "iuf":
            numbers_ = array.astype(float).ravel()
            missing = int(np.isnan(numbers_).sum())
            numbers_ = numbers_[~np.isnan(numbers_)]
        else:
            listed = list(values)
            present = [value for value in listed if not is_missing(value)]
            missing = len(listed) - len(present)
            numbers_ = _as_numbers(present)
        # side="left": the first edge >= value, so a value equal to an edge closes its bin.
        positions = np.searchsorted(np.asarray(binning.edges, dtype=float), numbers_, side="left")
        per_bin = np.bincount(positions, minlength=len(binning.edges) + 1)
        return [*(int(n) for n in per_bin), missing]

    index = {category: i for i, category in enumerate(binning.categories)}
    unseen = len(binning.categories)
    result = [0] * binning.size
    for value in values:
        if is_missing(value):
            result[-1] += 1
        else:
            result[index.get(category_of(value), unseen)] += 1
    return result


def merge_counts(periods: Iterable[Sequence[int]]) -> list[int]:
    """The counts of several periods binned alike, added bin by bin (weeks into a month)."""
    merged: list[int] | None = None
    for period in periods:
        if merged is None:
            merged = [int(n) for n in period]
        elif len(period) != len(merged):
            raise ValueError(f"cannot merge counts of {len(merged)} and {len(period)} bins")
        else:
            merged = [a + int(b) for a, b in zip(merged, period, strict=True)]
    if merged is None:
        raise ValueError("no counts to merge")
    return merged


# -- PSI and status -----------------------------------------------------------------------


def psi(expected_counts: Sequence[float], actual_counts: Sequence[float], floor: float = FLOOR) -> float:
    """Population Stability Index of `actual` (the period) against `expected` (the reference).

    Each side's counts become proportions of its own total, each proportion is clipped
    below at `floor` (so an empty bin weighs instead of dividing by zero; nothing is
    renormalised), then PSI = sum over bins of (a - e) * ln(a / e).

    Every term is >= 0, and the formula is symmetric in the two sides: the direction
    matters only in that the reference decides the bins. Counts may be floats
    (proportions work too). A side whose total is zero has no distribution: ValueError.
    """
    expected = np.asarray(expected_counts, dtype=float)
    actual = np.asarray(actual_counts, dtype=float)
    if expected.ndim != 1 or expected.shape != actual.shape or expected.size == 0:
        raise ValueError(
            f"psi needs two equal, non-empty lists of counts, got {expected.size} and {actual.size}"
        )
    if not (np.all(np.isfinite(expected)) and np.all(np.isfinite(actual))):
        raise ValueError("counts must be finite numbers")
    if np.any(expected < 0) or np.any(actual < 0):
        raise ValueError("counts cannot be negative")
    if not floor > 0:
        raise ValueError(f"the floor must be above 0, got {floor}")
    for name, side in (("expected (reference)", expected), ("actual (period)", actual)):
        if side.sum() == 0:
            raise ValueError(f"the {name} counts add up to 0: there is no distribution to compare")
    e = np.maximum(expected / expected.sum(), floor)
    a = np.maximum(actual / actual.sum(), floor)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class Thresholds:
    """PSI below `warning` is stable, from `warning` to below `drift` a warning, then drift."""

    warning: float = WARNING
    drift: float = DRIFT

    def __post_init__(self) -> None:
        if not 0 <= self.warning <= self.drift:
            raise ValueError(f"thresholds need 0 <= warning <= drift, got {self.warning} and {self.drift}")


def status(psi_value: float, warning: float = WARNING, drift: float = DRIFT) -> Status:
    """ "stable" below `warning`, "warning" from `warning` to below `drift`, "drift" from `drift`."""
    if math.isnan(psi_value):
        raise ValueError("PSI is NaN")
    Thresholds(warning, drift)  # validates them
    if psi_value >= drift:
        return "drift"
    if psi_value >= warning:
        return "warning"
    return "stable"


# -- results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnResult:
    """One column over one period: the counts (what is stored) and what they say."""

    column: str
    binning: Binning
    reference_counts: list[int]
    period_counts: list[int]
    psi: float | None
    status: Status

    @property
    def kind(self) -> Kind:
        return self.binning.kind

    @property
    def rows(self) -> int:
        """Rows of the period, missing values included."""
        return sum(self.period_counts)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; from_json() reads it back."""
        return {
            "column": self.column,
            "kind": self.kind,
            "binning": self.binning.to_json(),
            "reference_counts": list(self.reference_counts),
            "period_counts": list(self.period_counts),
            "rows": self.rows,
            "psi": self.psi,
            "status": self.status,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ColumnResult:
        if data["status"] not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {data['status']!r}")
        return cls(
            column=str(data["column"]),
            binning=Binning.from_json(data["binning"]),
            reference_counts=[int(n) for n in data["reference_counts"]],
            period_counts=[int(n) for n in data["period_counts"]],
            psi=None if data["psi"] is None else float(data["psi"]),
            status=data["status"],
        )


def column_result(
    column: str,
    binning: Binning,
    reference_counts: Sequence[int],
    period_counts: Sequence[int],
    *,
    minimum_rows: int = DEFAULT_MINIMUM_ROWS,
    thresholds: Thresholds = Thresholds(),  # frozen, so one default is safe to share
) -> ColumnResult:
    """The result of a column from its counts: fresh ones, or periods merged with merge_counts.

    A period with fewer than `minimum_rows` rows is "insufficient" and has no PSI: a
    handful of rows would swing it either way. An empty period always is.
    """
    if len(reference_counts) != binning.size or len(period_counts) != binning.size:
        raise ValueError(
            f"the binning has {binning.size} bins; got {len(reference_counts)} reference "
            f"and {len(period_counts)} period counts"
        )
    rows = sum(period_counts)
    if rows < max(minimum_rows, 1):
        value, verdict = None, "insufficient"
    else:
        value = psi(reference_counts, period_counts)
        verdict = status(value, thresholds.warning, thresholds.drift)
    return ColumnResult(
        column=column,
        binning=binning,
        reference_counts=[int(n) for n in reference_counts],
        period_counts=[int(n) for n in period_counts],
        psi=value,
        status=verdict,
    )


def compare(
    reference_values: Iterable[Any],
    current_values: Iterable[Any],
    *,
    column: str = "",
    kind: Kind | None = None,
    minimum_rows: int = DEFAULT_MINIMUM_ROWS,
    thresholds: Thresholds = Thresholds(),  # frozen, so one default is safe to share
) -> ColumnResult:
    """Bin a column on its reference, count both sides and compare them, in one call."""
    reference = list(reference_values)
    binning = binning_for(reference, kind)
    return column_result(
        column,
        binning,
        counts(binning, reference),
        counts(binning, current_values),
        minimum_rows=minimum_rows,
        thresholds=thresholds,
    )


def average_psi(results: Iterable[ColumnResult]) -> float | None:
    """The mean PSI of the columns that have one; None when none has."""
    values = [result.psi for result in results if result.psi is not None]
    return sum(values) / len(values) if values else None
