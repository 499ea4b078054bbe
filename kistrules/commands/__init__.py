"""The CLI's commands, one module per family; each registers on `kistrules.cli.app`."""
