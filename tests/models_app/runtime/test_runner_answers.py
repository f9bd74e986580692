"""How runner.py turns a Sync answer into JSON: pandas' indexes, timedeltas, periods, refusals.

The conversion is duck-typed and standard library only, so it is called here directly, in
the platform's interpreter, on real numpy and pandas objects. test_serve.py has a check of
the same through a real runner process.
"""

from __future__ import annotations

import datetime
import json

import numpy as np
import pandas as pd
import pytest

from models_app.runtime import runner


def answer(value: object) -> object:
    """What the caller gets: the runner's result as the frame's JSON carries it."""
    return json.loads(json.dumps(runner.normalise_sync_result(value), allow_nan=False))


def refusal(value: object) -> str:
    with pytest.raises(runner._UserError) as raised:
        runner.normalise_sync_result(value)
    assert raised.value.phase == "result"  # a 422, like any answer that is not JSON
    return raised.value.error


def as_reset_index(frame: pd.DataFrame) -> list[dict]:
    """What reset_index() gives, as JSON: the rule the runner follows for an index."""
    return json.loads(frame.reset_index().to_json(orient="records", date_format="iso"))


# ----------------------------------------------------------------------------- DataFrame


def test_a_frame_with_the_default_index_stays_a_list_of_records():
    frame = pd.DataFrame({"a": [1, 2], "b": [0.5, np.nan], "t": pd.to_datetime(["2024-01-01", None])})
    assert answer(frame) == [
        {"a": 1, "b": 0.5, "t": "2024-01-01T00:00:00"},
        {"a": 2, "b": None, "t": None},
    ]
    # Labels that are just the positions 0..n-1 carry nothing the list's order doesn't say:
    # the one-row idiom, and a frame filtered or sorted back to that order.
    assert answer(pd.DataFrame({"x": 1, "pred": 0.25}, index=[0])) == [{"x": 1, "pred": 0.25}]
    assert answer(pd.DataFrame({"a": [7, 8]}, index=pd.Index([0, 1], dtype="uint8"))) == [{"a": 7}, {"a": 8}]
    assert answer(pd.DataFrame({"a": []})) == []


def test_a_forecast_keeps_its_dates():
    dates = pd.date_range("2024-01-01", periods=2, freq="D")
    assert answer(pd.DataFrame({"v": [1.0, np.nan]}, index=dates)) == [
        {"index": "2024-01-01T00:00:00", "v": 1.0},
        {"index": "2024-01-02T00:00:00", "v": None},
    ]
    named = pd.DataFrame({"v": [1.0]}, index=dates[:1].rename("ds"))
    assert answer(named) == [{"ds": "2024-01-01T00:00:00", "v": 1.0}]


def test_a_pivot_table_keeps_its_row_labels():
    sales = pd.DataFrame({"region": ["n", "n", "s"], "month": [1, 2, 1], "sales": [1.0, 2.0, 3.0]})
    pivot = sales.pivot_table(index="region", columns="month", values="sales", aggfunc="sum")
    assert answer(pivot) == [
        {"region": "n", "1": 1.0, "2": 2.0},
        {"region": "s", "1": 3.0, "2": None},
    ]


def test_multiindex_columns_are_joined_with_a_dot():
    sales = pd.DataFrame({"region": ["n", "n", "s"], "month": [1, 2, 1], "sales": [1.0, 2.0, 3.0]})
    pivot = sales.pivot_table(index="region", columns="month", values="sales", aggfunc=["sum", "mean"])
    assert answer(pivot) == [
        {"region": "n", "sum.1": 1.0, "sum.2": 2.0, "mean.1": 1.0, "mean.2": 2.0},
        {"region": "s", "sum.1": 3.0, "sum.2": None, "mean.1": 3.0, "mean.2": None},
    ]
    # reset_index() fills the other levels with "": they are left out of the key.
    flat = pivot.reset_index()
    assert list(flat.columns)[0] == ("region", "")
    assert answer(flat)[0] == {"region": "n", "sum.1": 1.0, "sum.2": 2.0, "mean.1": 1.0, "mean.2": 2.0}


@pytest.mark.parametrize(
    "frame",
    [
        pd.DataFrame({"a": [1, 2]}, index=["x", "y"]),
        pd.DataFrame({"a": [1, 2]}, index=pd.Index([5, 3], name="id")),
        pd.DataFrame({"a": [5]}, index=pd.RangeIndex(1, name="row")),  # named: a field
        pd.DataFrame({"index": [1]}, index=["x"]),  # pandas then calls the index level_0
        pd.DataFrame({"k1": ["a", "a", "b"], "k2": [1, 2, 1], "v": [1, 2, 3]}).groupby(["k1", "k2"]).sum(),
        pd.DataFrame({"a": [1, 2]}, index=pd.MultiIndex.from_tuples([("x", 1), ("y", 2)])),
        pd.DataFrame({"a": [1, 2]}, index=pd.MultiIndex.from_tuples([("x", 1), ("y", 2)], names=["k", None])),
    ],
    ids=[
        "labels",
        "named",
        "named-range",
        "index-column",
        "groupby",
        "multi",
        "multi-half-named",
    ],
)
def test_an_index_becomes_the_first_fields_of_each_record_as_reset_index_names_them(frame):
    assert answer(frame) == as_reset_index(frame)
    assert list(answer(frame)[0]) == list(frame.reset_index().columns)


@pytest.mark.parametrize(
    "frame",
    [
        pd.DataFrame({"a": [1, 2, 3]}).iloc[[2, 0]],  # sorted: the original rows' numbers
        pd.DataFrame({"a": [1, 2, 3]}).query("a != 2"),  # filtered: 0 and 2
        pd.concat([pd.DataFrame({"a": [1, 2]}), pd.DataFrame({"a": [3]})]),  # 0, 1, 0
        pd.DataFrame({"a": [1]}, index=[0]),  # the one-row idiom
    ],
    ids=["sorted", "filtered", "concat", "one-row"],
)
def test_row_numbers_are_not_kept_so_the_shape_does_not_depend_on_the_rows(frame):
    assert answer(frame) == frame.to_dict(orient="records")


def test_duplicate_column_names_are_refused_not_dropped():
    error = refusal({"frame": pd.DataFrame([[1, 2, 3]], columns=["a", "b", "a"])})
    assert error == (
        'ValueError: the entrypoint\'s result has a pandas DataFrame at result["frame"] with more than one '
        'column named "a", and a record can hold a name once: rename them (df.columns = [...] or '
        "df.rename(columns=...))"
    )
    # Names that become the same JSON key collide as well.
    assert 'column named "1"' in refusal(pd.DataFrame([[1, 2]], columns=[1, "1"]))
    joined = pd.DataFrame([[1, 2]], columns=pd.MultiIndex.from_tuples([("a", "b.c"), ("a.b", "c")]))
    assert 'column named "a.b.c" (a MultiIndex\'s levels joined with ".")' in refusal(joined)


def test_an_index_named_like_a_column_is_refused():
    error = refusal(pd.DataFrame({"a": [1]}, index=pd.Index(["x"], name="a")))
    assert error.startswith(
        'ValueError: the entrypoint\'s result has a pandas DataFrame at result whose index would become the field "a"'
    )
    assert "df.reset_index(drop=True)" in error
    both = pd.DataFrame({"index": [1], "level_0": [2]}, index=["x"])
    assert 'the field "level_0"' in refusal(both)


# -------------------------------------------------------------------------------- Series


def test_a_series_with_labels_becomes_an_object():
    assert answer(pd.Series({"a": 1.5, "b": np.nan})) == {"a": 1.5, "b": None}
    assert answer(pd.Series([1.5, np.nan])) == [1.5, None]  # the default index: a list, as before
    # Row numbers (kept by a filter) are left out; a named index is a label the model set.
    assert answer(pd.Series([1, 2], index=[3, 7])) == [1, 2]
    assert answer(pd.Series([1, 2], index=pd.Index([0, 1], name="row"))) == {"0": 1, "1": 2}
    assert answer(pd.DataFrame({"a": [1], "b": ["x"]}).iloc[0]) == {"a": 1, "b": "x"}  # a row
    dated = pd.Series([0.5], index=pd.to_datetime(["2024-05-17"]))
    assert answer(dated) == {"2024-05-17T00:00:00": 0.5}
    grouped = pd.DataFrame({"k1": ["a", "a", "b"], "k2": [1, 2, 1], "v": [1, 2, 3]}).groupby(["k1", "k2"])[
        "v"
    ]
    assert answer(grouped.sum()) == {"a.1": 1, "a.2": 2, "b.1": 3}


def test_a_series_with_repeated_labels_is_refused():
    error = refusal({"s": pd.Series([1, 2, 3], index=["a", "b", "a"])})
    assert error.startswith(
        'ValueError: the entrypoint\'s result has a pandas Series at result["s"] whose labels repeat ("a")'
    )
    assert "series.to_frame()" in error and "series.tolist()" in error


# ---------------------------------------------------------------- timedeltas and periods

TIMEDELTAS = [
    pd.Timedelta(seconds=5),
    pd.Timedelta("1 days 02:03:04.5"),
    pd.Timedelta("-1s"),
    pd.Timedelta(days=-3, microseconds=7),
    pd.Timedelta(1, "ns"),
    pd.Timedelta(milliseconds=1, nanoseconds=20),
    pd.Timedelta(0),
    pd.Timedelta(days=400, hours=23, minutes=59, seconds=59, microseconds=999999),
]


def test_timedeltas_are_written_as_pandas_to_json_writes_them():
    expected = json.loads(pd.Series(TIMEDELTAS).to_json(orient="values", date_format="iso"))
    assert expected[:3] == ["P0DT0H0M5S", "P1DT2H3M4.500S", "P-1DT23H59M59S"]
    assert answer(TIMEDELTAS) == expected
    assert answer(pd.Series(TIMEDELTAS)) == expected
    # datetime.timedelta and numpy's timedelta64 in microseconds: the same spelling.
    micro = [td for td in TIMEDELTAS if not td.nanoseconds]
    micro_expected = [e for td, e in zip(TIMEDELTAS, expected, strict=True) if not td.nanoseconds]
    assert answer([td.to_pytimedelta() for td in micro]) == micro_expected
    assert answer([td.to_timedelta64() for td in micro]) == micro_expected
    assert answer(np.array([td.to_timedelta64() for td in micro])) == micro_expected
    assert answer({"gap": np.timedelta64(90, "s"), "none": np.timedelta64("NaT"), "nat": pd.NaT}) == {
        "gap": "P0DT0H1M30S",
        "none": None,
        "nat": None,
    }
    assert answer({datetime.timedelta(minutes=1): 1}) == {"P0DT0H1M0S": 1}  # as a key too


def test_periods_are_written_as_their_string():
    assert answer(pd.Period("2024-01", "M")) == "2024-01"
    assert answer(pd.Series(pd.period_range("2024Q1", periods=2, freq="Q"))) == ["2024Q1", "2024Q2"]
    monthly = pd.Series([1.5, 2.5], index=pd.period_range("2024-01", periods=2, freq="M"))
    assert answer(monthly) == {"2024-01": 1.5, "2024-02": 2.5}


def test_tz_aware_datetimes_keep_their_offset():
    stamps = pd.to_datetime(["2024-01-01 10:00"]).tz_localize("UTC")
    assert answer(pd.Series(stamps)) == ["2024-01-01T10:00:00+00:00"]
    assert answer(stamps) == ["2024-01-01T10:00:00+00:00"]
    assert answer(np.array(["2024-01-01T10:00"], dtype="datetime64[ns]")) == ["2024-01-01T10:00:00"]


# --------------------------------------------------------------------- float32 and float16


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_float32_and_float16_answer_the_value_numpy_prints():
    assert answer({"p": np.float32(0.1), "h": np.float16(0.1), "third": np.float32(1 / 3)}) == {
        "p": 0.1,
        "h": 0.1,
        "third": 0.33333334,
    }
    assert json.dumps(answer(np.float32(0.1))) == "0.1"  # not the float64 widening 0.10000000149011612
    assert answer([np.float32(0.3), np.float16(0.3), np.float32(-0.0)]) == [0.3, 0.3, -0.0]
    assert str(answer(np.float32(-0.0))) == "-0.0"
    assert answer(np.array([[0.1, 0.2], [np.nan, np.inf]], dtype="float32")) == [[0.1, 0.2], [None, None]]
    assert answer(np.array(0.7, dtype="float16")) == 0.7  # a 0-d array
    assert answer(np.matrix([[0.1, 0.2]], dtype="float32")) == [[0.1, 0.2]]
    assert answer({"nan": np.float32("nan"), "inf": np.float16("-inf")}) == {"nan": None, "inf": None}
    assert answer({np.float32(0.1): "key"}) == {"0.1": "key"}
    # float64 and Python floats keep every digit they have.
    assert answer([np.float64(0.1) + 0.2, 0.1 + 0.2, np.array([0.1 + 0.2])]) == [0.1 + 0.2] * 2 + [
        [0.1 + 0.2]
    ]
    assert answer(0.1 + 0.2) == 0.30000000000000004


def test_float32_columns_answer_the_values_pandas_prints():
    frame = pd.DataFrame(
        {
            "f32": np.array([0.1, np.nan], dtype="float32"),
            "f16": np.array([0.3, 2.5], dtype="float16"),
            "f64": [0.1 + 0.2, 0.5],
            "nullable": pd.array([0.7, None], dtype="Float32"),
            "n": [1, 2],
        }
    )
    assert answer(frame) == [
        {"f32": 0.1, "f16": 0.3, "f64": 0.30000000000000004, "nullable": 0.7, "n": 1},
        {"f32": None, "f16": 2.5, "f64": 0.5, "nullable": None, "n": 2},
    ]
    # With an index as fields, MultiIndex columns, a float32 index.
    assert answer(frame[["f32"]].set_axis(["x", "y"])) == [
        {"index": "x", "f32": 0.1},
        {"index": "y", "f32": None},
    ]
    multi = pd.DataFrame(
        np.float32([[0.1, 0.2]]), columns=pd.MultiIndex.from_tuples([("a", "x"), ("a", "y")])
    )
    assert answer(multi) == [{"a.x": 0.1, "a.y": 0.2}]
    by_threshold = pd.DataFrame({"hits": [3, 4]}, index=pd.Index(np.float32([0.1, 0.2]), name="t"))
    assert answer(by_threshold) == [{"t": 0.1, "hits": 3}, {"t": 0.2, "hits": 4}]
    # Series: a list, an object, its labels, the nullable dtype; a float32 Index alone.
    assert answer(pd.Series(np.float32([0.1, np.nan]))) == [0.1, None]
    assert answer(pd.Series(np.float32([0.1]), index=["a"])) == {"a": 0.1}
    assert answer(pd.Series(["low"], index=pd.Index(np.float32([0.1])))) == {"0.1": "low"}
    assert answer(pd.Series(pd.array([0.7, None], dtype="Float32"))) == [0.7, None]
    assert answer(pd.Index(np.float32([0.1, 0.2]))) == [0.1, 0.2]
    assert answer(frame[["f32"]].iloc[0]) == {"f32": 0.1}  # a row of float32 columns is float32


def test_float32_digits_are_the_shortest_that_give_the_value_back():
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2**32, 20_000, dtype=np.uint64).astype(np.uint32)
    float32s = bits.view(np.float32)
    float32s = float32s[np.isfinite(float32s)]
    float16s = np.arange(2**16, dtype=np.uint16).view(np.float16)
    float16s = float16s[np.isfinite(float16s)]  # every finite float16
    for values in (float32s, float16s):
        got = answer(values)
        assert np.array_equal(np.array(got, dtype=values.dtype), values)  # the same values back
        assert got == [float(str(x)) for x in values]  # with numpy's own (shortest) digits
        assert [repr(g) for g in got] == [repr(float(str(x))) for x in values]


def test_float32_digits_do_not_depend_on_numpys_print_options():
    with np.printoptions(legacy="1.13"):
        assert str(np.float32(1 / 3)) == "0.333333"  # what str() would have answered
        assert answer([np.float32(1 / 3), np.array([1 / 3], dtype="float32")]) == [0.33333334, [0.33333334]]
    with np.printoptions(precision=2, floatmode="fixed"):
        assert answer(pd.Series(np.float32([1 / 3]))) == [0.33333334]


# ------------------------------------------------------------------------ strings, plain data


def test_a_str_that_is_not_json_says_how_to_answer_it():
    error = refusal("approved")
    assert error == (
        "the entrypoint returned a string that is not valid JSON: Expecting value: line 1 column 1 "
        "(char 0), in 'approved'. A str that score() returns is taken as the answer's JSON text: "
        'return a dict or a list instead (such as {"result": "approved"}), or json.dumps(text) to '
        "answer the text as a JSON string"
    )
    assert answer(json.dumps("approved")) == "approved"
    long_error = refusal("x" * 100)
    assert "'" + "x" * 40 + "...'" in long_error and "such as" not in long_error


def test_plain_answers_never_reach_the_foreign_conversion(monkeypatch):
    def unexpected(value, path):
        raise AssertionError(f"{path} went through _convert_foreign")

    monkeypatch.setattr(runner, "_convert_foreign", unexpected)
    plain = {"pred": 1, "proba": 0.25, "label": "x", "ok": True, "none": None, "rows": [{"a": [1, 2.5]}]}
    assert runner.normalise_sync_result(plain) == plain
