"""Time from an edit to its diagnostics in `kistrules lsp`, on a 1,000-rule file.

    .venv/bin/python benchmarks/bench_lsp.py [--rules N] [--edits K] [--debounce S]

A real client (pygls) starts the server over stdio, opens a generated rulebook
(`bench_parse.generate`: scales, an override, N rules mixing every construct)
and sends K edits, alternating a typo that makes an error (E002: diagnostics
without the interval warnings) with its fix (a valid file: parse, checks and
every W1xx warning). Each figure is the wall time from sending `didChange`
to receiving `publishDiagnostics` for that version, debounce included; the
debounce is also subtracted to show the analysis alone. Also: the time to
the first diagnostics after opening, a completion and a hover at the end of
the file. Naive = what an editor without a server does after each save: run
`kistrules check --format json FILE` as a new process, measured in the same
run. Medians; the machine may be shared, so run it a few times.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_parse import generate
from lsprotocol import types
from machine import cpu_name  # benchmarks/machine.py
from pygls.lsp.client import LanguageClient

from kistrules.api import diagnose

URI = "file:///bench.rules"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux; steadier than wall time when
    the machine is shared)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def with_typo(text: str) -> str:
    """The text with the last rule's first property misspelt (E002)."""
    at = text.rindex("IF ") + 3
    return text[:at] + "x" + text[at:]


class Client(LanguageClient):
    def __init__(self) -> None:
        super().__init__("bench", "1")
        self.published: dict[int | None, float] = {}  # version -> arrival time
        self.arrived = asyncio.Event()


async def wait_for(client: Client, version: int, timeout: float = 120.0) -> float:
    deadline = time.perf_counter() + timeout
    while version not in client.published:
        client.arrived.clear()
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            raise TimeoutError(f"no diagnostics for version {version}")
        try:
            await asyncio.wait_for(client.arrived.wait(), remaining)
        except TimeoutError:
            continue
    return client.published[version]


async def run_server(text: str, edits: int, debounce: float) -> dict[str, list[float] | float]:
    client = Client()

    @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def _published(params: types.PublishDiagnosticsParams) -> None:
        client.published[params.version] = time.perf_counter()
        client.arrived.set()

    await client.start_io(sys.executable, "-m", "kistrules", "lsp")
    await client.initialize_async(
        types.InitializeParams(
            capabilities=types.ClientCapabilities(),
            initialization_options={"debounce": debounce},
        )
    )
    client.initialized(types.InitializedParams())
    start = time.perf_counter()
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=URI, language_id="kistrules", version=1, text=text
            )
        )
    )
    opened = await wait_for(client, 1) - start
    times: dict[str, list[float]] = {"error": [], "valid": [], "error_cpu": [], "valid_cpu": []}
    pid = client._server.pid
    for version in range(2, edits + 2):
        new_text = with_typo(text) if version % 2 == 0 else text
        start, start_cpu = time.perf_counter(), cpu_seconds(pid)
        client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=version),
                content_changes=[types.TextDocumentContentChangeWholeDocument(text=new_text)],
            )
        )
        arrived = await wait_for(client, version)
        kind = "error" if version % 2 == 0 else "valid"
        times[kind].append(arrived - start)
        times[kind + "_cpu"].append(cpu_seconds(pid) - start_cpu)
    # Requests on the analysed valid text: completion after the last `is`, hover on a name.
    lines = text.splitlines()
    last = len(lines) - 1
    column = lines[last].rindex(" is ") + 4
    document = types.TextDocumentIdentifier(uri=URI)
    position = types.Position(line=last, character=column)
    completion, hover = [], []
    for _ in range(5):
        start = time.perf_counter()
        await client.text_document_completion_async(
            types.CompletionParams(text_document=document, position=position)
        )
        completion.append(time.perf_counter() - start)
        start = time.perf_counter()
        await client.text_document_hover_async(
            types.HoverParams(text_document=document, position=position)
        )
        hover.append(time.perf_counter() - start)
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    return {"open": opened, **times, "completion": completion, "hover": hover}


def naive_check(text: str, repeat: int) -> tuple[float, float]:
    """Median wall and CPU seconds of `kistrules check` as a new process."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.rules"
        path.write_text(text, encoding="utf-8")
        runs, cpu = [], []
        for _ in range(repeat):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "kistrules", "check", "--format", "json", str(path)],
                capture_output=True,
                check=False,
            )
            runs.append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return statistics.median(runs), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--edits", type=int, default=10)
    parser.add_argument("--debounce", type=float, default=0.2)
    args = parser.parse_args()
    text = generate(args.rules)
    _, diagnostics = diagnose(text)
    assert not [d for d in diagnostics if d.severity == "error"]
    assert [d.code for d in diagnose(with_typo(text))[1]] == ["E002"]
    in_process, in_process_cpu = [], []
    for _ in range(3):
        start, start_cpu = time.perf_counter(), time.process_time()
        diagnose(text)
        in_process.append(time.perf_counter() - start)
        in_process_cpu.append(time.process_time() - start_cpu)
    server = asyncio.run(run_server(text, args.edits, args.debounce))
    naive, naive_cpu = naive_check(text, 3)
    valid = statistics.median(server["valid"])
    error = statistics.median(server["error"])
    print(f"CPU: {cpu_name()}")
    print(f"{args.rules} rules ({len(text) / 1e3:.0f} kB), debounce {args.debounce * 1e3:.0f} ms")
    print(
        f"  diagnose() in process (floor):        {statistics.median(in_process):.3f} s "
        f"(CPU {statistics.median(in_process_cpu):.2f} s)"
    )
    print(f"  open -> diagnostics:                  {server['open']:.3f} s")
    for label, kind in (("valid file (with warnings)", "valid"), ("file with an error", "error")):
        value = statistics.median(server[kind])
        print(
            f"  edit -> diagnostics, {label + ':':28s}{value:.3f} s "
            f"({value - args.debounce:.3f} s after the debounce; "
            f"server CPU {statistics.median(server[kind + '_cpu']):.2f} s)"
        )
    for label in ("completion", "hover"):
        print(f"  {label + ' at the last rule:':36s}  {statistics.median(server[label]):.3f} s")
    print(f"  naive: kistrules check as a process:  {naive:.3f} s (CPU {naive_cpu:.2f} s)")
    valid_cpu = statistics.median(server["valid_cpu"])
    print(
        f"  -> {naive / valid:.1f}x faster than naive (valid file), {naive / error:.1f}x (error); "
        f"{naive_cpu / valid_cpu:.1f}x less CPU (valid file)"
    )


if __name__ == "__main__":
    main()
