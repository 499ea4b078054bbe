"""Helpers for a real language client talking to `kistrules lsp` over stdio (pytest-lsp).

One server per test module (starting Python and the parser costs about a
second); each test opens documents under its own URIs. Every wait has a
generous timeout (`TIMEOUT`), so that a loaded 2-core machine slows the tests
down but does not fail them.
"""

from __future__ import annotations

import asyncio
import sys
import time

from lsprotocol import types
from pygls.protocol import default_converter
from pytest_lsp import LanguageClient
from pytest_lsp.client import DEFAULT_CLIENT_FEATURES, register_lsp_features

TIMEOUT = 60.0
SERVER = [sys.executable, "-m", "kistrules", "lsp"]


class RecordingClient(LanguageClient):
    """pytest-lsp's client, also keeping every publishDiagnostics in order of arrival."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.published: list[types.PublishDiagnosticsParams] = []
        self.versions: dict[str, int] = {}


def _record(client: RecordingClient, params: types.PublishDiagnosticsParams) -> None:
    client.diagnostics[params.uri] = params.diagnostics
    client.published.append(params)


def make_client() -> RecordingClient:
    client = RecordingClient(converter_factory=default_converter)
    register_lsp_features(
        client, {**DEFAULT_CLIENT_FEATURES, types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS: _record}
    )
    return client


def initialize_params(
    debounce: float, encodings: list[types.PositionEncodingKind] | None = None
) -> types.InitializeParams:
    general = types.GeneralClientCapabilities(position_encodings=encodings) if encodings else None
    return types.InitializeParams(
        capabilities=types.ClientCapabilities(general=general),
        initialization_options={"debounce": debounce},
    )


async def wait_published(
    client: RecordingClient, uri: str, version: int | None = None, *, after: int = 0
) -> types.PublishDiagnosticsParams:
    """The first diagnostics published for `uri` (at `version`, if given) from the
    `after`-th publication on."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        for params in client.published[after:]:
            if params.uri == uri and (version is None or params.version == version):
                return params
        await asyncio.sleep(0.01)
    raise AssertionError(f"no diagnostics for {uri} version {version} within {TIMEOUT} s")


async def open_document(client: RecordingClient, uri: str, text: str) -> list[types.Diagnostic]:
    """Open a document and return the diagnostics published for it."""
    client.versions[uri] = 1
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id="kistrules", version=1, text=text
            )
        )
    )
    return list((await wait_published(client, uri, 1)).diagnostics)


def change_document(client: RecordingClient, uri: str, text: str) -> int:
    """Replace a document's text (full sync); returns its new version."""
    version = client.versions[uri] = client.versions[uri] + 1
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)],
        )
    )
    return version


async def request(awaitable):
    """A request's answer, or a test failure after TIMEOUT seconds."""
    return await asyncio.wait_for(awaitable, TIMEOUT)
