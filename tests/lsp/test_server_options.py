"""`kistrules lsp` with a client that debounces slowly and counts columns in UTF-8 bytes."""

from __future__ import annotations

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig

from kistrules.api import check
from tests.lsp.client import (
    SERVER,
    RecordingClient,
    change_document,
    initialize_params,
    make_client,
    open_document,
    wait_published,
)

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]

# Long enough that a burst of edits sent in one go (microseconds apart) is never
# split by a stall of the loaded test machine.
DEBOUNCE = 1.0


# `--stdio`, as VS Code's language client may pass it.
@pytest_lsp.fixture(
    config=ClientServerConfig(server_command=[*SERVER, "--stdio"], client_factory=make_client),
    scope="module",
)
async def client(lsp_client: RecordingClient):
    lsp_client.init_result = await lsp_client.initialize_session(
        initialize_params(DEBOUNCE, encodings=[types.PositionEncodingKind.Utf8])
    )
    yield
    await lsp_client.shutdown_session()


async def test_a_burst_of_edits_yields_one_publication_for_the_final_text(client):
    uri = "file:///burst.rules"
    valid = "scale gray = 255\nIF gray is low THEN anomalous\n"
    assert list(await open_document(client, uri, valid)) == []
    before = len(client.published)
    # Each intermediate text has an error of its own (a truth value above 1), so a
    # publication for any of them, or for the final version with an older text,
    # would show.
    for i in range(1, 10):
        change_document(client, uri, valid.replace("anomalous", f"anomalous (1.{i})"))
    final_text = "IF grya is low THEN anomalous\n"
    version = change_document(client, uri, final_text)
    final = await wait_published(client, uri, version, after=before)
    assert [d.code for d in final.diagnostics] == [d.code for d in check(final_text)] == ["E002"]
    assert [p for p in client.published[before:] if p.uri == uri] == [final]


async def test_utf8_positions_when_the_client_asks_for_them(client):
    capabilities = client.init_result.capabilities
    assert capabilities.position_encoding == types.PositionEncodingKind.Utf8
    # Whole texts, not incremental edits: pygls would place an edit after a form feed
    # on the wrong line (it splits lines with str.splitlines).
    assert capabilities.text_document_sync.change == types.TextDocumentSyncKind.Full
    uri = "file:///utf8.rules"
    prefix = 'rulebook "𝛾 Prüfung" scale '
    rule = "IF gray is low THEN anomalous\n"
    (diagnostic,) = await open_document(client, uri, prefix + "grya = 1\n" + rule)
    column = len(prefix.encode("utf-8"))
    assert column == len(prefix) + 4  # 𝛾: 4 bytes, ü: 2
    assert diagnostic.range == types.Range(
        types.Position(0, column), types.Position(0, column + len("grya"))
    )
    # Unchanged text under a new version (an undo): published again, for that version.
    version = change_document(client, uri, prefix + "grya = 1\n" + rule)
    assert [d.code for d in (await wait_published(client, uri, version)).diagnostics] == ["E002"]
