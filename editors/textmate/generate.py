"""Write `kistrules.tmLanguage.json`, the TextMate grammar of `.rules` files.

    .venv/bin/python editors/textmate/generate.py

The word lists (keywords, properties, hedges, membership functions, built-in
sets) come from `kistrules.builtins`, so a new property or keyword is one run
of this script away; `tests/editors/test_textmate.py` fails while the
committed grammar differs from what this script writes. Every pattern is a
single-line `match` (no begin/end) and uses only regex syntax that Oniguruma
(VS Code, TextMate, GitHub) and Python's `re` read alike: `(?i)` at the start,
classes, `\\b`, `\\s`, a lookbehind of one character class. Editors read line
by line, so a statement split across lines still gets every token scoped,
only the declaring ones (`set NAME`, `define NAME`, `rule NAME:`, `class NAME`,
`THEN CLASS`) lose their name's special scope.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # run from a checkout without installing

from kistrules.builtins import (  # noqa: E402
    BUILTIN_SETS,
    HEDGES,
    KEYWORDS,
    MEMBERSHIP_FUNCTIONS,
    PROPERTIES,
)

OUTPUT = HERE / "kistrules.tmLanguage.json"
NAME = "[A-Za-z_][A-Za-z0-9_]*"
# Keywords by what they do; a keyword missing here is still scoped, as keyword.other.
KEYWORD_SCOPES = {
    "rulebook": "storage.type",
    "class": "storage.type",
    "scale": "storage.type",
    "set": "storage.type",
    "threshold": "storage.type",
    "rule": "storage.type",
    "define": "storage.type",
    "raw": "keyword.other.unit",
    "if": "keyword.control",
    "then": "keyword.control",
    "and": "keyword.operator.logical",
    "or": "keyword.operator.logical",
    "not": "keyword.operator.logical",
    "is": "keyword.operator.word",
    "anomalous": "constant.language",
}


def _words(words, scope: str) -> dict:
    alternatives = "|".join(sorted(words, key=lambda w: (-len(w), w)))
    return {"match": f"(?i)\\b(?:{alternatives})\\b", "name": f"{scope}.kistrules"}


def _keywords() -> list[dict]:
    by_scope: dict[str, list[str]] = {}
    for word in KEYWORDS:
        by_scope.setdefault(KEYWORD_SCOPES.get(word, "keyword.other"), []).append(word)
    return [_words(words, scope) for scope, words in by_scope.items()]


def grammar() -> dict:
    s = ".kistrules"
    repository = {
        "comment": {
            "patterns": [
                {
                    "match": "(#)(.*?)(kist:\\s*ignore)(?:(\\[)([^\\]]*)(\\]))?(.*)$",
                    "name": "comment.line.number-sign" + s,
                    "captures": {
                        "1": {"name": "punctuation.definition.comment" + s},
                        "3": {"name": "keyword.other.directive" + s},
                        "5": {"name": "constant.other.diagnostic-code" + s},
                    },
                },
                {
                    "match": "(#).*$",
                    "name": "comment.line.number-sign" + s,
                    "captures": {"1": {"name": "punctuation.definition.comment" + s}},
                },
            ]
        },
        "string": {
            "patterns": [
                {"match": '"[^"]*"', "name": "string.quoted.double" + s},
                {"match": '"[^"]*$', "name": "invalid.illegal.unterminated-string" + s},
            ]
        },
        "declaration": {
            "patterns": [
                {
                    "match": f"(?i)\\b(set)\\s+({NAME})\\s*(\\.)\\s*({NAME})\\b",
                    "captures": {
                        "1": {"name": "storage.type" + s},
                        "2": {"name": "support.variable.property" + s},
                        "3": {"name": "punctuation.accessor" + s},
                        "4": {"name": "entity.name.type.set" + s},
                    },
                },
                {
                    "match": f"(?i)\\b(set)\\s+({NAME})\\b",
                    "captures": {
                        "1": {"name": "storage.type" + s},
                        "2": {"name": "entity.name.type.set" + s},
                    },
                },
                {  # `class blowhole, crack`: the first name, then each after a comma
                    "match": f"(?i)\\b(class)\\s+({NAME})\\b",
                    "captures": {
                        "1": {"name": "storage.type" + s},
                        "2": {"name": "entity.name.type.class" + s},
                    },
                },
                {  # only class lines have a name after a comma (arguments are numbers)
                    "match": f"(,)\\s*({NAME})\\b",
                    "captures": {
                        "1": {"name": "punctuation.separator.comma" + s},
                        "2": {"name": "entity.name.type.class" + s},
                    },
                },
                {  # `THEN crack`: the class a rule concludes (`anomalous` is a keyword)
                    "match": f"(?i)\\b(then)\\s+(?!anomalous\\b)({NAME})\\b",
                    "captures": {
                        "1": {"name": "keyword.control" + s},
                        "2": {"name": "entity.name.type.class" + s},
                    },
                },
                {
                    "match": f"(?i)\\b(define)\\s+({NAME})\\b",
                    "captures": {
                        "1": {"name": "storage.type" + s},
                        "2": {"name": "entity.name.function.condition" + s},
                    },
                },
                {
                    "match": f"(?i)\\b(rule)\\s+({NAME})\\s*(:)",
                    "captures": {
                        "1": {"name": "storage.type" + s},
                        "2": {"name": "entity.name.function.rule" + s},
                        "3": {"name": "punctuation.separator.colon" + s},
                    },
                },
            ]
        },
        "keyword": {"patterns": _keywords()},
        "builtin": {
            "patterns": [
                _words(PROPERTIES, "support.variable.property"),
                _words(HEDGES, "storage.modifier.hedge"),
                _words(MEMBERSHIP_FUNCTIONS, "support.function.membership"),
                _words(BUILTIN_SETS, "support.constant.set"),
            ]
        },
        "number": {
            "match": "(?<![A-Za-z0-9_.])[+-]?(?:[0-9]+(?:\\.[0-9]*)?|\\.[0-9]+)(?:[eE][+-]?[0-9]+)?",
            "name": "constant.numeric" + s,
        },
        "punctuation": {
            "patterns": [
                {"match": "\\(", "name": "punctuation.section.parens.begin" + s},
                {"match": "\\)", "name": "punctuation.section.parens.end" + s},
                {"match": ",", "name": "punctuation.separator.comma" + s},
                {"match": "=", "name": "keyword.operator.assignment" + s},
                {"match": ":", "name": "punctuation.separator.colon" + s},
                {"match": "\\.", "name": "punctuation.accessor" + s},
            ]
        },
        "name": {"match": f"\\b{NAME}\\b", "name": "variable.other" + s},
    }
    return {
        "name": "kistrules",
        "scopeName": "source.kistrules",
        "fileTypes": ["rules"],
        "comment": "Generated by editors/textmate/generate.py from kistrules/builtins.py.",
        # Order settles ties between patterns that match at the same column.
        "patterns": [{"include": f"#{name}"} for name in repository],
        "repository": repository,
    }


def render() -> str:
    return json.dumps(grammar(), indent=2) + "\n"


if __name__ == "__main__":
    OUTPUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUTPUT}")
