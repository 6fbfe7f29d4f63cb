"""One module per sub-command. See :mod:`caitool.cli` for the convention."""
