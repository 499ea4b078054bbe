"""`kistrules lsp` end to end: pytest-lsp starts the server and talks to it over stdio.

Expected values come from the library the server must reuse (`check`,
`format_source`, `explain_code`, the builtins tables), so a test fails when the
server's answer drifts from what `kistrules check` / `fmt` / `explain-code` say.
"""

from __future__ import annotations

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig

from kistrules.api import MAX_RULEBOOK_BYTES, check
from kistrules.builtins import BUILTIN_SETS, HEDGES, PROPERTIES
from kistrules.formatter import format_source
from kistrules.render import explain_code
from tests.lsp.client import (
    SERVER,
    RecordingClient,
    change_document,
    initialize_params,
    make_client,
    open_document,
    request,
    wait_published,
)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]


@pytest_lsp.fixture(
    config=ClientServerConfig(server_command=SERVER, client_factory=make_client), scope="module"
)
async def client(lsp_client: RecordingClient):
    await lsp_client.initialize_session(initialize_params(debounce=0.05))
    yield
    await lsp_client.shutdown_session()


RULEBOOK = """\
rulebook "demo"
scale gray = 200
set gray.dark = trapezoid(0, 0, 0.1, 0.3)
set big = triangle(0.5, 0.8, 1)
rule first: IF gray is dark AND area is big THEN anomalous (0.9)
IF gray is low OR area is big THEN anomalous (0.85)
"""


def at(text: str, needle: str, nth: int = 0, delta: int = 0) -> types.Position:
    """The position of the nth `needle` (+ delta characters) in ASCII text."""
    offset = -1
    for _ in range(nth + 1):
        offset = text.index(needle, offset + 1)
    offset += delta
    line = text.count("\n", 0, offset)
    return types.Position(line, offset - (text.rfind("\n", 0, offset) + 1))


def doc(uri: str) -> types.TextDocumentIdentifier:
    return types.TextDocumentIdentifier(uri=uri)


async def hover_text(client, uri: str, position: types.Position) -> str:
    result = await request(
        client.text_document_hover_async(
            types.HoverParams(text_document=doc(uri), position=position)
        )
    )
    assert result is not None
    return result.contents.value


async def labels(client, uri: str, position: types.Position) -> list[str]:
    result = await request(
        client.text_document_completion_async(
            types.CompletionParams(text_document=doc(uri), position=position)
        )
    )
    items = result.items if isinstance(result, types.CompletionList) else result
    return [item.label for item in items]


# --- diagnostics ----------------------------------------------------------------------


async def test_open_reports_every_error_as_check_does(client):
    text = (
        "IF grya is low THEN anomalous\n"
        "IF gray is low THN anomalous\n"
        "set odd = trapezium(0, 0, 1, 1)\n"
        "IF gray is vrey low THEN anomalous (1.5)\n"
    )
    published = await open_document(client, "file:///errors.rules", text)
    expected = check(text)
    assert len(expected) >= 5  # E002, E001, E012, E013, E004: recovery after the syntax error
    assert [d.code for d in published] == [d.code for d in expected]
    for got, want in zip(published, expected, strict=True):
        assert got.severity == types.DiagnosticSeverity.Error
        assert got.source == "kistrules"
        assert got.message.startswith(want.message)
        if want.hint:
            assert f"hint: {want.hint}" in got.message
        span = want.span  # 1-based lines and columns; ASCII text: columns are UTF-16 units
        assert got.range.start == types.Position(span.line - 1, span.column - 1)
        assert got.range.end == types.Position(span.end_line - 1, span.end_column - 1)


async def test_warnings_are_published_with_warning_severity(client):
    text = (
        "scale gray = 255\nset unused = trapezoid(0, 0, 0.1, 0.2)\nIF gray is low THEN anomalous\n"
    )
    published = await open_document(client, "file:///warnings.rules", text)
    assert [d.code for d in published] == [d.code for d in check(text)] == ["W105"]
    (warning,) = published
    assert warning.severity == types.DiagnosticSeverity.Warning
    assert list(warning.tags) == [types.DiagnosticTag.Unnecessary]
    assert warning.range.start == at(text, "unused")


async def test_edit_updates_and_close_clears_diagnostics(client):
    uri = "file:///edit.rules"
    assert [d.code for d in await open_document(client, uri, "IF grya is low THEN anomalous")] == [
        "E002"
    ]
    version = change_document(client, uri, "scale gray = 9\nIF gray is low THEN anomalous")
    assert list((await wait_published(client, uri, version)).diagnostics) == []
    before = len(client.published)
    client.text_document_did_close(types.DidCloseTextDocumentParams(text_document=doc(uri)))
    cleared = await wait_published(client, uri, after=before)
    assert list(cleared.diagnostics) == []


# --- hover ----------------------------------------------------------------------------


async def test_hover_on_a_property_shows_its_definition_unit_and_scale(client):
    uri = "file:///hover-property.rules"
    await open_document(client, uri, RULEBOOK)
    text = await hover_text(client, uri, at(RULEBOOK, "gray is dark", delta=2))
    info = PROPERTIES["gray"]
    assert info.meaning in text and info.definition in text and info.unit in text
    assert "scale gray = 200" in text and "line 2" in text
    # A property without a scale line: its default gamma.
    text = await hover_text(client, uri, at(RULEBOOK, "area is big"))
    assert f"{PROPERTIES['area'].default_scale:g}" in text and "default" in text


async def test_hover_on_a_set_shows_standardised_and_raw_parameters(client):
    uri = "file:///hover-set.rules"
    await open_document(client, uri, RULEBOOK)
    # The override gray.dark, gamma 200: raw = 0, 0, 20, 60.
    text = await hover_text(client, uri, at(RULEBOOK, "is dark", delta=4))
    assert "gray.dark" in text and "trapezoid(0, 0, 0.1, 0.3)" in text and "line 3" in text
    assert "| standardised | 0 | 0 | 0.1 | 0.3 |" in text
    assert "| 0 | 0 | 20 | 60 |" in text
    # The built-in low, for gray: its table from BUILTIN_SETS, raw x 200.
    function, params = BUILTIN_SETS["low"]
    text = await hover_text(client, uri, at(RULEBOOK, "is low", delta=4))
    assert "built-in" in text and function in text
    assert "| " + " | ".join(f"{p * 200:g}" for p in params) + " |" in text
    # The declaration of a file-wide set: raw values for each property that uses it.
    text = await hover_text(client, uri, at(RULEBOOK, "set big", delta=5))
    assert "triangle(0.5, 0.8, 1)" in text and "| area (" in text and "| 0.5 | 0.8 | 1 |" in text


async def test_hover_shows_explain_code_for_diagnostics_and_ignore_comments(client):
    uri = "file:///hover-code.rules"
    text = "IF grya is low THEN anomalous\nset spare = triangle(0, 0.5, 1)  # kist: ignore[W105]\n"
    await open_document(client, uri, text)
    assert explain_code("E002") in await hover_text(client, uri, at(text, "grya", delta=1))
    assert explain_code("W105") in await hover_text(client, uri, at(text, "W105", delta=2))


async def test_hover_on_a_hedge_and_a_rule_name(client):
    uri = "file:///hover-other.rules"
    text = "rule dim: IF gray is very low THEN anomalous (0.7)\n"
    await open_document(client, uri, text)
    assert f"x^{HEDGES['very']:g}" in await hover_text(client, uri, at(text, "very"))
    rule = await hover_text(client, uri, at(text, "dim"))
    assert "if gray is very low then anomalous (0.7)" in rule and "TV 0.7" in rule


# --- completion -----------------------------------------------------------------------


async def test_completion_offers_what_fits_at_the_cursor(client):
    uri = "file:///complete.rules"
    text = "set gray.dark = trapezoid(0, 0, 0.1, 0.3)\nset big = triangle(0.5, 0.8, 1)\n"
    await open_document(client, uri, text)
    end = at(text + "x", "x")  # the start of the empty last line

    async def after(typed: str) -> list[str]:
        version = change_document(client, uri, text + typed)
        await wait_published(client, uri, version)
        position = types.Position(end.line, len(typed))
        return await labels(client, uri, position)

    statement_keywords = {"rulebook", "scale", "set", "threshold", "rule", "if"}
    assert statement_keywords <= set(await after(""))
    assert set(PROPERTIES) | {"not"} <= set(await after("IF "))
    # After `is`: not, hedges, and the sets usable with gray (its override included).
    found = await after("IF gray is ")
    assert {"not", *HEDGES, *BUILTIN_SETS, "dark", "big"} <= set(found)
    # The override for gray is not usable with area.
    found = await after("IF area is ")
    assert "big" in found and "dark" not in found
    # After a complete term: the connectives, and no more names.
    found = await after("IF gray is low TH")
    assert {"then", "and", "or"} <= set(found) and not set(found) & set(BUILTIN_SETS)
    assert await after("IF gray is low THEN ") == ["anomalous"]
    assert {"trapezoid", "triangle", "gaussian"} <= set(await after("set odd = "))
    assert await after("# a comment IF ") == []


# --- names ----------------------------------------------------------------------------


async def test_definition_and_references_follow_the_set_a_term_uses(client):
    uri = "file:///names.rules"
    await open_document(client, uri, RULEBOOK)

    async def definition(position):
        return await request(
            client.text_document_definition_async(
                types.DefinitionParams(text_document=doc(uri), position=position)
            )
        )

    async def references(position, declaration: bool):
        return await request(
            client.text_document_references_async(
                types.ReferenceParams(
                    text_document=doc(uri),
                    position=position,
                    context=types.ReferenceContext(include_declaration=declaration),
                )
            )
        )

    (found,) = await definition(at(RULEBOOK, "is dark", delta=4))
    assert found.uri == uri and found.range.start == at(RULEBOOK, "dark")
    (found,) = await definition(at(RULEBOOK, "is big", nth=1, delta=3))
    assert found.range.start == at(RULEBOOK, "big")
    assert await definition(at(RULEBOOK, "is low", delta=3)) is None  # built-in: not in the file
    uses = await references(at(RULEBOOK, "big"), declaration=False)
    assert [r.range.start for r in uses] == [at(RULEBOOK, "big", 1), at(RULEBOOK, "big", 2)]
    uses = await references(at(RULEBOOK, "big", 2), declaration=True)
    assert [r.range.start for r in uses] == [at(RULEBOOK, "big", i) for i in range(3)]
    (found,) = await definition(at(RULEBOOK, "first"))
    assert found.range.start == at(RULEBOOK, "first")


async def test_defined_conditions_go_to_definition_and_rename(client):
    uri = "file:///named.rules"
    text = "define dark = gray is low\nrule r: IF dark AND area is high THEN anomalous\n"
    await open_document(client, uri, text)
    use = at(text, "dark", 1, delta=2)
    (found,) = await request(
        client.text_document_definition_async(
            types.DefinitionParams(text_document=doc(uri), position=use)
        )
    )
    assert found.range.start == at(text, "dark")
    where = await request(
        client.text_document_prepare_rename_async(
            types.PrepareRenameParams(text_document=doc(uri), position=use)
        )
    )
    assert where.start == at(text, "dark", 1)
    edit = await request(
        client.text_document_rename_async(
            types.RenameParams(text_document=doc(uri), position=use, new_name="dim")
        )
    )
    assert sorted(e.range.start for e in edit.changes[uri]) == [at(text, "dark", i) for i in (0, 1)]
    with pytest.raises(Exception, match="is a property"):
        await request(
            client.text_document_rename_async(
                types.RenameParams(text_document=doc(uri), position=use, new_name="gray")
            )
        )


async def test_document_symbols_list_sets_and_rules(client):
    uri = "file:///symbols.rules"
    await open_document(client, uri, RULEBOOK)
    symbols = await request(
        client.text_document_document_symbol_async(
            types.DocumentSymbolParams(text_document=doc(uri))
        )
    )
    assert [s.name for s in symbols] == ["gray.dark", "big", "first", "rule 2"]
    assert symbols[0].kind != symbols[2].kind
    assert symbols[2].selection_range.start == at(RULEBOOK, "first")
    assert symbols[3].range.start == at(RULEBOOK, "IF gray is low")


# --- edits ----------------------------------------------------------------------------


def apply(text: str, edit: types.TextEdit) -> str:
    lines = [line + "\n" for line in text.split("\n")]  # the tests' texts end lines with \n

    def offset(p: types.Position) -> int:
        return sum(len(line) for line in lines[: p.line]) + p.character

    return text[: offset(edit.range.start)] + edit.new_text + text[offset(edit.range.end) :]


async def test_formatting_is_fmt_and_refuses_a_file_with_errors(client):
    uri = "file:///format.rules"
    text = "IF GRAY is LOW  then   anomalous (0.9)\nscale gray=255\n"
    await open_document(client, uri, text)
    params = types.DocumentFormattingParams(
        text_document=doc(uri), options=types.FormattingOptions(tab_size=4, insert_spaces=True)
    )
    (edit,) = await request(client.text_document_formatting_async(params))
    assert apply(text, edit) == format_source(text)[0]
    version = change_document(client, uri, "IF grya is low THEN anomalous\n")
    await wait_published(client, uri, version)
    assert list(await request(client.text_document_formatting_async(params))) == []
    assert any("not formatted" in m.message for m in client.messages)


async def test_code_actions_apply_each_did_you_mean(client):
    uri = "file:///fix.rules"
    text = "IF grya is lwo THN anomalous\nIF gray is vrey low THEN anomalous\n"
    await open_document(client, uri, text)
    everything = types.Range(types.Position(0, 0), types.Position(2, 0))
    actions = await request(
        client.text_document_code_action_async(
            types.CodeActionParams(
                text_document=doc(uri),
                range=everything,
                context=types.CodeActionContext(diagnostics=[]),
            )
        )
    )
    titles = sorted(a.title for a in actions)
    assert titles == ['Replace with "then"', 'Replace with "very"']
    fixed = text
    for action in sorted(actions, key=lambda a: a.edit.changes[uri][0].range.start, reverse=True):
        assert action.kind == types.CodeActionKind.QuickFix
        (edit,) = action.edit.changes[uri]
        fixed = apply(fixed, edit)
    assert fixed == "IF grya is lwo then anomalous\nIF gray is very low THEN anomalous\n"
    # With the syntax error fixed, the name errors show, each with its own fix.
    version = change_document(client, uri, fixed)
    await wait_published(client, uri, version)
    actions = await request(
        client.text_document_code_action_async(
            types.CodeActionParams(
                text_document=doc(uri),
                range=types.Range(at(fixed, "grya"), at(fixed, "lwo", delta=3)),
                context=types.CodeActionContext(diagnostics=[]),
            )
        )
    )
    assert sorted(a.title for a in actions) == ['Replace with "gray"', 'Replace with "low"']
    for action in sorted(actions, key=lambda a: a.edit.changes[uri][0].range.start, reverse=True):
        fixed = apply(fixed, action.edit.changes[uri][0])
    assert [d.code for d in check(fixed) if d.severity == "error"] == []


# --- positions ------------------------------------------------------------------------


async def test_positions_count_utf16_units_and_lsp_line_ends(client):
    uri = "file:///unicode.rules"
    # A string with an astral character (2 UTF-16 units) and an accent (1), and a
    # statement after it on the same line; CRLF line ends; a form feed, which is
    # whitespace and not a line end.
    text = (
        'rulebook "𝛾 Prüfung" scale grya = 1\r\nIF gray is low\fAND area is hgih THEN anomalous\r\n'
    )
    published = await open_document(client, uri, text)
    codes = {d.code: d.range for d in published}
    prefix = 'rulebook "𝛾 Prüfung" scale '
    column = len(prefix.encode("utf-16-le")) // 2
    assert column == len(prefix) + 1
    assert codes["E002"] == types.Range(
        types.Position(0, column), types.Position(0, column + len("grya"))
    )
    column = len("IF gray is low\fAND area is ")
    assert codes["E003"].start == types.Position(1, column)
    # Hover at a UTF-16 position lands on the right word.
    assert explain_code("E002") in await hover_text(
        client, uri, types.Position(0, column_of(prefix))
    )


def column_of(prefix: str) -> int:
    return len(prefix.encode("utf-16-le", errors="surrogatepass")) // 2


async def test_hostile_documents_get_an_answer_not_a_crash(client):
    # A lone surrogate (valid JSON, not valid UTF-8): an E001 at its place, in UTF-16 units.
    uri = "file:///surrogate.rules"
    text = 'rulebook "𝛾" \ud800 IF grya is low THEN anomalous\n'
    published = await open_document(client, uri, text)
    assert [d.code for d in published] == [d.code for d in check(text)]
    assert published[0].range.start == types.Position(0, column_of('rulebook "𝛾" '))
    assert explain_code("E002") in await hover_text(
        client, uri, types.Position(0, column_of('rulebook "𝛾" \ud800 IF g'))
    )
    # Larger than check's limit: not analysed, and the user is told once.
    uri = "file:///huge.rules"
    huge = "IF gray is low THEN anomalous\n" * (1 + MAX_RULEBOOK_BYTES // 30)
    assert list(await open_document(client, uri, huge)) == []
    assert any("larger than" in m.message and "huge.rules" in m.message for m in client.messages)
    # Requests about a document that was never opened.
    unknown = "file:///never-opened.rules"
    assert (
        await request(
            client.text_document_hover_async(
                types.HoverParams(text_document=doc(unknown), position=types.Position(0, 0))
            )
        )
        is None
    )
    assert await labels(client, unknown, types.Position(0, 0)) == []
