"""The CLI's commands, one module per family; `kistrules.cli` registers them on its app."""
