"""The pygls server: protocol wiring, document versions and debounced diagnostics.

Diagnostics: a document is analysed when opened, and after each burst of
edits once the text has been quiet for `debounce` seconds (default 0.2; the
client may pass `{"debounce": SECONDS}` as initialization options). Analysing
is CPU-bound (a 1,000-rule file takes a few tenths of a second), so it runs in
a worker thread, one at a time per document, and its diagnostics are
published only if the document has not changed meanwhile (a newer analysis
is then on its way). Requests (hover, definition, ...) use the analysis of
the current text, made on demand when the debounced one is not there yet;
completion uses the latest analysis whatever its version, because it needs
only the file's names and must not wait.

The text is synchronised in full on every change: pygls applies incremental
edits with `str.splitlines`, which also breaks lines at form feeds and other
characters that are not line ends for LSP (the grammar allows `\\f` as
whitespace), so incremental edits could land at the wrong place.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from kistrules import __version__
from kistrules.api import MAX_RULEBOOK_BYTES
from kistrules.lsp import features
from kistrules.lsp.completion import complete
from kistrules.lsp.document import Snapshot, analyse
from kistrules.lsp.positions import PositionMap

DEFAULT_DEBOUNCE = 0.2
log = logging.getLogger(__name__)


@dataclass
class _Document:
    """The server's state for one open document."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one analysis at a time
    timer: asyncio.Task | None = None  # the debounce wait, cancelled by the next edit
    snapshot: Snapshot | None = None  # the latest analysis
    told_too_large: bool = False


class KistrulesServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__(
            "kistrules", __version__, text_document_sync_kind=types.TextDocumentSyncKind.Full
        )
        self.debounce = DEFAULT_DEBOUNCE
        self.documents: dict[str, _Document] = {}
        self._tasks: set[asyncio.Task] = set()  # strong references to running analyses

    @property
    def encoding(self) -> str:
        kind = self.workspace.position_encoding or types.PositionEncodingKind.Utf16
        return getattr(kind, "value", kind)

    def path(self, uri: str) -> str:
        return to_fs_path(uri) or uri

    def offset(self, snapshot: Snapshot, position: types.Position) -> int:
        return snapshot.positions(self.encoding).offset(position.line, position.character)

    # --- analysis -----------------------------------------------------------------

    async def current(self, uri: str) -> Snapshot | None:
        """The analysis of the document's current text (made now if there is none yet)."""
        state = self.documents.get(uri)
        if state is None:
            return None
        async with state.lock:
            document = self.workspace.get_text_document(uri)
            text, version = document.source, document.version
            snapshot = state.snapshot
            if snapshot is None or snapshot.text != text:
                snapshot = await asyncio.to_thread(analyse, uri, version, text, self.path(uri))
                if self.documents.get(uri) is state:
                    state.snapshot = snapshot
            else:
                snapshot.version = version  # an edit that restored the analysed text (undo)
            return snapshot

    async def publish(self, uri: str) -> None:
        """Analyse the current text and publish its diagnostics, unless it changed meanwhile."""
        snapshot = await self.current(uri)
        state = self.documents.get(uri)
        if snapshot is None or state is None:
            return
        if self.workspace.get_text_document(uri).version != snapshot.version:
            return  # edited during the analysis: the next debounced run publishes
        if snapshot.too_large and not state.told_too_large:
            state.told_too_large = True
            self.window_show_message(
                types.ShowMessageParams(
                    type=types.MessageType.Warning,
                    message=f"kistrules: {self.path(uri)} is larger than "
                    f"{MAX_RULEBOOK_BYTES:,} bytes (1 MiB), the limit of kistrules check; "
                    "not analysed",
                )
            )
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(
                uri=uri,
                version=snapshot.version,
                diagnostics=features.lsp_diagnostics(snapshot, self.encoding),
            )
        )

    def schedule(self, uri: str, delay: float) -> None:
        """Publish after `delay` seconds without edits; an edit before then restarts the wait."""
        state = self.documents.setdefault(uri, _Document())
        if state.timer is not None:
            state.timer.cancel()

        async def wait_then_publish() -> None:
            if delay > 0:
                await asyncio.sleep(delay)
            state.timer = None
            # A task of its own, so that the next edit's cancel() cannot stop it halfway.
            task = asyncio.create_task(self.publish(uri))
            self._tasks.add(task)
            task.add_done_callback(self._finished)

        state.timer = asyncio.create_task(wait_then_publish())

    def _finished(self, task: asyncio.Task) -> None:
        """Forget a finished analysis; a failure (a bug) goes to the client's log."""
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        log.error("analysis failed", exc_info=error)
        self.window_log_message(
            types.LogMessageParams(
                type=types.MessageType.Error,
                message=f"kistrules: internal error while analysing: {type(error).__name__}: "
                f"{error} (please report it)",
            )
        )

    def close(self, uri: str) -> None:
        state = self.documents.pop(uri, None)
        if state is not None and state.timer is not None:
            state.timer.cancel()
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=[])
        )


def create_server() -> KistrulesServer:
    server = KistrulesServer()

    @server.feature(types.INITIALIZE)
    def initialize(ls: KistrulesServer, params: types.InitializeParams) -> None:
        options = params.initialization_options
        if isinstance(options, dict) and isinstance(options.get("debounce"), int | float):
            ls.debounce = max(0.0, float(options["debounce"]))

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: KistrulesServer, params: types.DidOpenTextDocumentParams) -> None:
        ls.schedule(params.text_document.uri, 0.0)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: KistrulesServer, params: types.DidChangeTextDocumentParams) -> None:
        ls.schedule(params.text_document.uri, ls.debounce)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: KistrulesServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.close(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    async def hover(ls: KistrulesServer, params: types.HoverParams) -> types.Hover | None:
        snapshot = await ls.current(params.text_document.uri)
        if snapshot is None:
            return None
        return features.hover(snapshot, ls.offset(snapshot, params.position), ls.encoding)

    @server.feature(
        types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=["."])
    )
    def completion(ls: KistrulesServer, params: types.CompletionParams) -> types.CompletionList:
        uri = params.text_document.uri
        state = ls.documents.get(uri)
        if state is None:  # not open: nothing to complete
            return types.CompletionList(is_incomplete=False, items=[])
        text = ls.workspace.get_text_document(uri).source
        latest = state.snapshot
        rulebook = latest.rulebook if latest is not None else None
        index = latest.index if latest is not None else None
        offset = PositionMap(text, ls.encoding).offset(
            params.position.line, params.position.character
        )
        return types.CompletionList(
            is_incomplete=False, items=complete(text, offset, rulebook, index)
        )

    @server.feature(types.TEXT_DOCUMENT_DEFINITION)
    async def definition(
        ls: KistrulesServer, params: types.DefinitionParams
    ) -> list[types.Location] | None:
        snapshot = await ls.current(params.text_document.uri)
        if snapshot is None:
            return None
        return features.definition(snapshot, ls.offset(snapshot, params.position), ls.encoding)

    @server.feature(types.TEXT_DOCUMENT_REFERENCES)
    async def references(
        ls: KistrulesServer, params: types.ReferenceParams
    ) -> list[types.Location] | None:
        snapshot = await ls.current(params.text_document.uri)
        if snapshot is None:
            return None
        return features.references(
            snapshot,
            ls.offset(snapshot, params.position),
            ls.encoding,
            include_declaration=params.context.include_declaration,
        )

    @server.feature(types.TEXT_DOCUMENT_PREPARE_RENAME)
    async def prepare_rename(
        ls: KistrulesServer, params: types.PrepareRenameParams
    ) -> types.Range | None:
        snapshot = await ls.current(params.text_document.uri)
        if snapshot is None:
            return None
        return features.prepare_rename(snapshot, ls.offset(snapshot, params.position), ls.encoding)

    @server.feature(types.TEXT_DOCUMENT_RENAME, types.RenameOptions(prepare_provider=True))
    async def rename(ls: KistrulesServer, params: types.RenameParams) -> types.WorkspaceEdit:
        snapshot = await ls.current(params.text_document.uri)
        if snapshot is None:
            raise JsonRpcInvalidParams("the document is not open")
        offset = ls.offset(snapshot, params.position)
        edit, problem = features.rename(snapshot, offset, params.new_name, ls.encoding)
        if edit is None:
            raise JsonRpcInvalidParams(problem or "cannot rename this")
        return edit

    @server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    async def document_symbols(
        ls: KistrulesServer, params: types.DocumentSymbolParams
    ) -> list[types.DocumentSymbol]:
        snapshot = await ls.current(params.text_document.uri)
        return features.document_symbols(snapshot, ls.encoding) if snapshot is not None else []

    @server.feature(types.TEXT_DOCUMENT_FORMATTING)
    async def formatting(
        ls: KistrulesServer, params: types.DocumentFormattingParams
    ) -> list[types.TextEdit]:
        uri = params.text_document.uri
        snapshot = await ls.current(uri)
        if snapshot is None:
            return []
        edits, errors = features.formatting(snapshot, ls.path(uri), ls.encoding)
        if errors:
            first = errors[0]
            ls.window_show_message(
                types.ShowMessageParams(
                    type=types.MessageType.Warning,
                    message=f"kistrules: not formatted, {len(errors)} error(s); "
                    f"first: {first.span.line}:{first.span.column} {first.message}",
                )
            )
        return edits

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix]),
    )
    async def code_action(
        ls: KistrulesServer, params: types.CodeActionParams
    ) -> list[types.CodeAction]:
        snapshot = await ls.current(params.text_document.uri)
        if snapshot is None:
            return []
        start = ls.offset(snapshot, params.range.start)
        end = ls.offset(snapshot, params.range.end)
        return features.code_actions(snapshot, start, end, ls.encoding)

    return server


def serve() -> None:
    """Run the server on stdin/stdout until the client says exit."""
    create_server().start_io()
