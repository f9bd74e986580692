"""What JSON a user uploads may be stored and shown again (groups.storable_json)."""

from __future__ import annotations

import json

import pytest

from groups.storable_json import MAX_DEPTH, storable_problem


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": [1, 2.5, "x", null, true]}', None),
        ("[" * MAX_DEPTH + "]" * MAX_DEPTH, None),
        ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "more than 64 levels deep"),
        ('{"a": "\\ud800"}', "\\ud800, a lone surrogate"),
        ('{"\\udfff": 1}', "\\udfff, a lone surrogate"),  # keys are shown too
        ('{"a": "x\\u0000y"}', "\\u0000 (a NUL character)"),
        ('{"\\u0000": 1}', "\\u0000 (a NUL character)"),
        ('{"a": 1e999}', "a number too large for JSON"),
        ('{"a": NaN}', "a number too large for JSON"),
    ],
)
def test_what_cannot_be_stored_is_named(text, expected):
    problem = storable_problem(json.loads(text))
    assert problem is None if expected is None else expected in problem, problem


def test_metrics_may_keep_nan_for_their_caller_to_clear():
    assert storable_problem({"auc": float("nan")}, allow_nan=True) is None
    assert "lone surrogate" in storable_problem({"\ud800": float("nan")}, allow_nan=True)
