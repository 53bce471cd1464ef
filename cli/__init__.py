"""The `compbench` command line: one module per command, the parser in `main.py`."""
