// Starts `kistrules lsp` (over stdio) for .rules files; everything else is the server's.
"use strict";

const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate() {
  const config = vscode.workspace.getConfiguration("kistrules");
  const server = {
    command: config.get("server.command", "kistrules"),
    args: config.get("server.args", ["lsp"]),
  };
  client = new LanguageClient("kistrules", "kistrules language server", server, {
    documentSelector: [{ language: "kistrules" }],
  });
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
