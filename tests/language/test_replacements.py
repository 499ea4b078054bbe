"""`Diagnostic.replacement`: the did-you-mean's word, for editors' one-click fixes."""

from __future__ import annotations

import json

import pytest

from kistrules.api import check
from kistrules.render import render_json


def _apply(text: str, diagnostic) -> str:
    return text[: diagnostic.span.start] + diagnostic.replacement + text[diagnostic.span.end :]


@pytest.mark.parametrize(
    ("text", "code", "word"),
    [
        ("IF grya is low THEN anomalous", "E002", "gray"),
        ("scale unevennes = 3\nIF gray is low THEN anomalous", "E002", "unevenness"),
        ("IF gray is lwo THEN anomalous", "E003", "low"),
        ("set dark = trapeziod(0, 0, 1, 1)\nIF gray is dark THEN anomalous", "E012", "trapezoid"),
        ("IF gray is vrey low THEN anomalous", "E013", "very"),
        ("IF gray is low THN anomalous", "E001", "then"),
        ("IF gray is low ANS area is high THEN anomalous", "E001", "and"),
    ],
)
def test_a_did_you_mean_carries_its_word_and_applying_it_fixes_the_error(text, code, word):
    (diagnostic,) = [d for d in check(text) if d.code == code]
    assert diagnostic.replacement == word
    assert diagnostic.hint == f'did you mean "{word}"?'
    fixed = _apply(text, diagnostic)
    assert not [d for d in check(fixed) if d.severity == "error"]


@pytest.mark.parametrize(
    "text",
    [
        "IF xyzzy is low THEN anomalous",  # nothing close: the hint lists the properties
        "IF gray is very THEN anomalous",  # a hedge where a set belongs
        "IF gray is low THEN anomalous (1.5)",  # no name involved
    ],
)
def test_other_hints_carry_no_replacement(text):
    diagnostics = check(text)
    assert diagnostics and all(d.replacement is None for d in diagnostics)


def test_check_json_output_does_not_show_the_replacement():
    (entry,) = json.loads(render_json(check("IF grya is low THEN anomalous")))
    assert "replacement" not in entry
    assert entry["hint"] == 'did you mean "gray"?'
