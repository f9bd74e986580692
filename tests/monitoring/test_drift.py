"""The drift arithmetic (monitoring/drift.py): known answers, bins, counts, PSI, status."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from monitoring.drift import (
    Binning,
    ColumnResult,
    Thresholds,
    average_psi,
    binning_for,
    column_result,
    compare,
    counts,
    merge_counts,
    psi,
    status,
)

CATEGORICAL_REFERENCE = ["A"] * 50 + ["B"] * 30 + ["C"] * 20
CATEGORICAL_CURRENT = ["A"] * 30 + ["B"] * 30 + ["C"] * 30 + ["D"] * 10


# -- known answers (docs/monitoring.md) ---------------------------------------------------


def test_psi_of_proportions_known_answer():
    assert round(psi([0.1, 0.2, 0.3, 0.4], [0.25] * 4), 6) == 0.228217
    # Counts give the same proportions, so the same PSI.
    assert round(psi([10, 20, 30, 40], [25, 25, 25, 25]), 6) == 0.228217


def test_psi_is_symmetric_so_only_the_binning_has_a_direction():
    assert psi([0.1, 0.2, 0.3, 0.4], [0.25] * 4) == pytest.approx(psi([0.25] * 4, [0.1, 0.2, 0.3, 0.4]))


def test_numeric_shift_known_answer():
    result = compare(range(1000), range(500, 1500), minimum_rows=1)
    assert result.binning.edges == pytest.approx(
        (99.9, 199.8, 299.7, 399.6, 499.5, 599.4, 699.3, 799.2, 899.1)
    )
    assert result.reference_counts == [100] * 10 + [0]
    assert result.period_counts == [0, 0, 0, 0, 0, 100, 100, 100, 100, 600, 0]
    assert round(result.psi, 6) == 4.346303
    # By hand: five emptied bins at the floor, the last bin 0.1 -> 0.6, the rest unchanged.
    assert result.psi == pytest.approx(5 * (1e-4 - 0.1) * math.log(1e-4 / 0.1) + 0.5 * math.log(6))
    assert result.status == "drift"


def test_identical_data_is_zero():
    result = compare(range(1000), range(1000))
    assert result.psi == 0
    assert result.status == "stable"
    assert compare(CATEGORICAL_REFERENCE, CATEGORICAL_REFERENCE).psi == 0


def test_categorical_with_an_unseen_category_known_answer():
    result = compare(CATEGORICAL_REFERENCE, CATEGORICAL_CURRENT, column="segment")
    assert result.kind == "categorical"
    assert result.binning.labels() == ["A", "B", "C", "(unseen)", "(missing)"]
    assert result.reference_counts == [50, 30, 20, 0, 0]
    assert result.period_counts == [30, 30, 30, 10, 0]
    assert round(result.psi, 6) == 0.832796
    assert result.status == "drift"


# -- binning ------------------------------------------------------------------------------


def test_kind_is_numeric_only_when_every_present_value_is_a_real_number():
    assert binning_for([1, 2.5, np.int64(3), np.float32(4), None, float("nan")]).kind == "numeric"
    assert binning_for([1, 2, "3"]).kind == "categorical"
    assert binning_for([True, False, True]).kind == "categorical"
    assert binning_for([np.True_, np.False_]).kind == "categorical"
    assert binning_for([1, 2, 3], kind="categorical").categories == ("1", "2", "3")
    with pytest.raises(ValueError, match="numeric column holds 'x'"):
        binning_for([1, "x"], kind="numeric")


def test_a_constant_column_has_a_bin_of_its_own_and_one_on_each_side():
    binning = binning_for([5.0] * 200)
    assert binning.edges == (math.nextafter(5.0, -math.inf), 5.0)
    assert binning.below_minimum
    assert binning.labels() == ["(-inf, 5)", "5", "(5, +inf)", "(missing)"]
    assert counts(binning, [5.0] * 200) == [0, 200, 0, 0]
    assert compare([5.0] * 200, [5.0] * 150).psi == 0
    # A constant that moves, up or down, lands in another bin: full drift.
    for value, moved_counts in ((6.0, [0, 0, 150, 0]), (4.0, [150, 0, 0, 0]), (4.999, [150, 0, 0, 0])):
        moved = compare([5.0] * 200, [value] * 150)
        assert moved.period_counts == moved_counts
        assert moved.status == "drift"


def test_many_duplicates_collapse_edges():
    values = [0] * 850 + list(range(1, 151))
    binning = binning_for(values)
    # Deciles 0.1 .. 0.8 are all 0: one edge for them, then 0.9's (between 50 and 51);
    # 0 is the minimum, so the float below it is an edge too.
    assert binning.edges == (math.nextafter(0.0, -math.inf), 0.0, pytest.approx(50.1))
    assert counts(binning, values) == [0, 850, 50, 100, 0]
    assert binning.labels()[:3] == ["(-inf, 0)", "0", "(0, 50.1]"]
    # The whole column moving below the training range is drift, not "stable".
    assert compare(values, [-100] * 1000).status == "drift"


def test_only_a_minimum_holding_a_decile_gets_the_bin_below():
    binning = binning_for(range(1000))
    assert binning.edges[0] == pytest.approx(99.9) and not binning.below_minimum
    assert binning.labels()[0] == "(-inf, 99.9]"


def test_edge_labels_tell_close_edges_apart():
    # Epoch seconds: 6 significant digits would write every inner edge as 1.76495e+09.
    labels = binning_for([1_764_950_000 + i for i in range(1000)]).labels()
    assert len(set(labels)) == len(labels)
    assert labels[0] == "(-inf, 1.7649501e+09]"


def test_bins_are_right_closed():
    binning = Binning("numeric", edges=(1.0, 2.0))
    assert counts(binning, [0, 1, 1.5, 2, 2.000001, 99]) == [2, 2, 2, 0]


def test_infinities_fall_in_the_outer_bins_and_make_no_edge():
    binning = binning_for([float("-inf"), *range(100), float("inf")])
    assert all(math.isfinite(edge) for edge in binning.edges)
    assert counts(binning, [float("-inf"), float("inf")]) == [1] + [0] * (len(binning.edges) - 1) + [1, 0]


def test_an_all_missing_reference_has_a_single_value_bin():
    binning = binning_for([None, float("nan")])
    assert binning == Binning("numeric")
    assert counts(binning, [1, None, 3]) == [2, 1]


def test_binning_json_round_trip():
    for binning in (binning_for(range(1000)), binning_for(CATEGORICAL_REFERENCE), binning_for([7] * 10)):
        text = json.dumps(binning.to_json(), allow_nan=False)
        assert Binning.from_json(json.loads(text)) == binning


def test_a_malformed_binning_is_refused():
    with pytest.raises(ValueError, match="kind"):
        Binning.from_json({"kind": "ordinal"})
    with pytest.raises(ValueError, match="increasing"):
        Binning.from_json({"kind": "numeric", "edges": [2, 1]})
    with pytest.raises(ValueError, match="sorted"):
        Binning.from_json({"kind": "categorical", "categories": ["B", "A"]})


# -- counts -------------------------------------------------------------------------------


def test_missing_values_have_their_own_bin_and_are_compared():
    reference = [*range(90), *[None] * 10]  # 10% missing
    current = [*range(70), *[float("nan")] * 20, *[np.nan] * 10]  # 30% missing
    result = compare(reference, current)
    assert result.reference_counts[-1] == 10
    assert result.period_counts[-1] == 30
    assert result.rows == 100
    # The missing bin's share moves 0.1 -> 0.3; the others are read off the counts.
    e = np.maximum(np.array(result.reference_counts) / 100, 1e-4)
    a = np.maximum(np.array(result.period_counts) / 100, 1e-4)
    assert result.psi == pytest.approx(float(np.sum((a - e) * np.log(a / e))))
    assert result.psi >= (0.3 - 0.1) * math.log(3)


def test_missing_categories_and_unseen_ones_are_apart():
    binning = binning_for(["x", "y", None])
    assert binning.categories == ("x", "y")
    assert counts(binning, ["x", "z", None, float("nan"), "w", "y"]) == [1, 1, 2, 2]


def test_integral_floats_are_the_same_category_as_ints():
    binning = binning_for([1, 2, "other"])
    assert counts(binning, [1.0, 2, "1", np.float64(2.0), 2.5]) == [2, 2, 0, 1, 0]


def test_numpy_arrays_count_like_lists():
    rng = np.random.default_rng(3)
    values = rng.normal(size=500)
    values[::7] = np.nan
    binning = binning_for(values)
    assert counts(binning, values) == counts(binning, values.tolist())
    assert counts(binning, values)[-1] == len(values[::7])


def test_a_string_in_a_numeric_column_is_an_error_that_names_it():
    with pytest.raises(ValueError, match="'oops'"):
        counts(binning_for(range(10)), [1, "oops"])


def test_weekly_counts_merge_into_the_months_counts():
    rng = np.random.default_rng(7)
    binning = binning_for(rng.normal(size=2000))
    weeks = [rng.normal(loc=0.1 * week, size=300 + 50 * week).tolist() for week in range(4)]
    weeks[2][:20] = [None] * 20
    month = [value for week in weeks for value in week]
    assert merge_counts(counts(binning, week) for week in weeks) == counts(binning, month)

    categorical = binning_for(CATEGORICAL_REFERENCE)
    halves = [CATEGORICAL_CURRENT[:45], CATEGORICAL_CURRENT[45:]]
    assert merge_counts(counts(categorical, half) for half in halves) == counts(
        categorical, CATEGORICAL_CURRENT
    )


def test_merge_refuses_what_does_not_add_up():
    with pytest.raises(ValueError, match="3 and 2 bins"):
        merge_counts([[1, 2, 3], [1, 2]])
    with pytest.raises(ValueError, match="no counts"):
        merge_counts([])


# -- PSI ----------------------------------------------------------------------------------


def test_zero_totals_are_a_clear_error():
    with pytest.raises(ValueError, match="expected .reference. counts add up to 0"):
        psi([0, 0], [1, 2])
    with pytest.raises(ValueError, match="actual .period. counts add up to 0"):
        psi([1, 2], [0, 0])


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="equal"):
        psi([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="negative"):
        psi([1, -1], [1, 1])
    with pytest.raises(ValueError, match="finite"):
        psi([1, float("nan")], [1, 1])


def test_the_floor_bounds_an_emptied_bin():
    # One bin emptied: its term is (floor - e) * ln(floor / e), finite.
    assert psi([50, 50], [100, 0]) == pytest.approx(
        (1 - 0.5) * math.log(1 / 0.5) + (1e-4 - 0.5) * math.log(1e-4 / 0.5)
    )
    assert psi([50, 50], [100, 0], floor=1e-2) < psi([50, 50], [100, 0])


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_psi_is_never_negative_and_zero_on_identical_distributions(seed):
    rng = np.random.default_rng(seed)
    reference = rng.lognormal(size=int(rng.integers(50, 2000))).tolist()
    current = (rng.lognormal(size=int(rng.integers(50, 2000))) * rng.uniform(0.5, 2)).tolist()
    binning = binning_for(reference)
    expected = counts(binning, reference)
    assert psi(expected, counts(binning, current)) >= 0
    assert psi(expected, expected) == 0
    # The same distribution in other units (every count doubled) is no drift either.
    assert psi(expected, [2 * n for n in expected]) == pytest.approx(0, abs=1e-12)

    bins = int(rng.integers(2, 12))
    e, a = rng.integers(0, 100, size=bins), rng.integers(0, 100, size=bins)
    e[0], a[0] = 1, 1  # never a zero total
    assert psi(e, a) >= 0


# -- status and results -------------------------------------------------------------------


def test_status_thresholds():
    assert status(0) == "stable"
    assert status(0.0999) == "stable"
    assert status(0.1) == "warning"
    assert status(0.2499) == "warning"
    assert status(0.25) == "drift"
    assert status(4.3) == "drift"
    assert status(0.15, warning=0.2, drift=0.3) == "stable"
    with pytest.raises(ValueError, match="warning <= drift"):
        status(0.1, warning=0.3, drift=0.2)
    with pytest.raises(ValueError, match="NaN"):
        status(float("nan"))


def test_a_small_period_is_insufficient_and_has_no_psi():
    result = compare(range(1000), range(500, 540), minimum_rows=50)
    assert result.rows == 40
    assert result.psi is None
    assert result.status == "insufficient"
    assert sum(result.period_counts) == 40  # counted all the same: later periods add to them
    assert compare(range(1000), range(500, 550), minimum_rows=50).status == "drift"
    assert compare(range(1000), [], minimum_rows=0).status == "insufficient"


def test_thresholds_reach_the_status_of_a_result():
    strict = compare(CATEGORICAL_REFERENCE, CATEGORICAL_CURRENT, thresholds=Thresholds(0.9, 1.0))
    assert round(strict.psi, 6) == 0.832796
    assert strict.status == "stable"


def test_merged_periods_give_the_same_result_as_the_whole():
    reference = list(range(1000))
    binning = binning_for(reference)
    whole = compare(reference, range(500, 1500), minimum_rows=1)
    weeks = [range(500, 900), range(900, 1200), range(1200, 1500)]
    merged = column_result(
        "",
        binning,
        counts(binning, reference),
        merge_counts(counts(binning, week) for week in weeks),
        minimum_rows=1,
    )
    assert merged == whole


def test_column_result_json_round_trip():
    result = compare(CATEGORICAL_REFERENCE, CATEGORICAL_CURRENT, column="segment")
    data = json.loads(json.dumps(result.to_json(), allow_nan=False))
    assert data["rows"] == 100
    assert data["kind"] == "categorical"
    assert ColumnResult.from_json(data) == result


def test_column_result_checks_the_number_of_bins():
    with pytest.raises(ValueError, match="11 bins"):
        column_result("x", binning_for(range(1000)), [1, 2], [1, 2])


def test_average_psi_counts_only_columns_with_a_number():
    results = [
        compare(range(1000), range(500, 1500), minimum_rows=1),
        compare(CATEGORICAL_REFERENCE, CATEGORICAL_CURRENT, minimum_rows=1),
        compare(range(1000), range(10), minimum_rows=100),  # insufficient
    ]
    assert results[2].psi is None
    assert average_psi(results) == pytest.approx((results[0].psi + results[1].psi) / 2)
    assert average_psi(results[2:]) is None
    assert average_psi([]) is None
