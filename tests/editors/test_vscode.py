"""The VS Code extension manifest and the editor setup notes point at a real server."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kistrules.cli import app

ROOT = Path(__file__).resolve().parents[2]
VSCODE = ROOT / "editors" / "vscode"
GRAMMAR = ROOT / "editors" / "textmate" / "kistrules.tmLanguage.json"


def _manifest() -> dict:
    return json.loads((VSCODE / "package.json").read_text(encoding="utf-8"))


def _cli_commands() -> set[str]:
    return {command.name for command in app.registered_commands}


def test_manifest_declares_the_language_grammar_and_server():
    manifest = _manifest()
    (language,) = manifest["contributes"]["languages"]
    assert language["extensions"] == [".rules"]
    assert f"onLanguage:{language['id']}" in manifest["activationEvents"]
    json.loads((VSCODE / language["configuration"]).read_text(encoding="utf-8"))
    (grammar,) = manifest["contributes"]["grammars"]
    assert grammar["language"] == language["id"] and grammar["scopeName"] == "source.kistrules"
    # The extension ships the one grammar of editors/textmate (a link, not a copy).
    assert (VSCODE / grammar["path"]).resolve() == GRAMMAR.resolve()
    assert (VSCODE / manifest["main"]).is_file()
    assert "vscode-languageclient" in manifest["dependencies"]
    settings = manifest["contributes"]["configuration"]["properties"]
    assert settings["kistrules.server.command"]["default"] == "kistrules"
    (command,) = settings["kistrules.server.args"]["default"]
    assert command in _cli_commands()


def test_extension_starts_the_configured_server():
    source = (VSCODE / "extension.js").read_text(encoding="utf-8")
    assert 'require("vscode-languageclient/node")' in source
    for key in ("server.command", "server.args"):
        assert f'config.get("{key}"' in source
    assert re.search(r"module\.exports\s*=\s*\{\s*activate,\s*deactivate\s*\}", source)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_extension_is_valid_javascript():
    subprocess.run(["node", "--check", str(VSCODE / "extension.js")], check=True, timeout=60)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is new in Python 3.11")
def test_the_helix_setup_parses_and_starts_kistrules_lsp():
    import tomllib

    readme = (ROOT / "editors" / "README.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"```toml\n(.*?)```", readme, flags=re.DOTALL)
    config = tomllib.loads(block)
    server = config["language-server"]["kistrules"]
    assert server["command"] == "kistrules" and server["args"][0] in _cli_commands()
    (language,) = config["language"]
    assert language["file-types"] == ["rules"] and language["scope"] == "source.kistrules"
    assert '{ "kistrules", "lsp" }' in readme  # Neovim's cmd
