"""Numbers on the training pages are written in the page's language."""

import pytest
from django.utils import translation

from training.automl.results import _percent
from training.display import duration_text, number_text

CASES = [
    # value, English, Brazilian Portuguese
    (0.97312, "0.9731", "0,9731"),
    (12345.64, "12,345.6", "12.345,6"),
    (12345, "12,345", "12.345"),
    (1.2e-07, "1.200e-07", "1,200e-07"),
    (3.0, "3", "3"),
    (None, "—", "—"),
]


@pytest.mark.parametrize(("value", "english", "portuguese"), CASES)
def test_a_metric_reads_in_the_pages_language(value, english, portuguese):
    with translation.override("en"):
        assert number_text(value) == english
    with translation.override("pt-br"):
        assert number_text(value) == portuguese


def test_durations_and_shares_read_in_the_pages_language():
    with translation.override("pt-br"):
        assert duration_text(12.25) == "12,2 s"
        assert _percent(0.125) == "12,5 %"
    with translation.override("en"):
        assert duration_text(12.25) == "12.2 s"
        assert _percent(0.125) == "12.5 %"


def test_the_run_pages_shares_read_in_the_pages_language():
    from training.pages import params_view

    params = {"target": {"values": {"0": 2 / 3, "1": 1 / 3}}, "missing": {"age": 0.125}}
    with translation.override("pt-br"):
        view = params_view(params)
        assert [text for _label, text, _width in view["target"]["columns"][0][1]] == ["66,7 %", "33,3 %"]
        assert view["missing"] == [("age", "12,50 %")]
    with translation.override("en"):
        assert params_view(params)["missing"] == [("age", "12.50 %")]
