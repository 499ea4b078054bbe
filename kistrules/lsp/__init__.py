"""The language server for `.rules` files (`kistrules lsp`), on pygls over stdio.

Every answer comes from the code `check`, `fmt` and `explain-code` use: the
parser's AST (`kistrules.symbols` for names), `kistrules.api.diagnose`,
`kistrules.formatter.format_source`, `kistrules.render.explain_code` and the
tables of `kistrules.builtins`. pygls is an optional dependency (the `lsp`
extra): only `kistrules.lsp.server` imports it, and only `kistrules lsp` imports
that module.
"""
