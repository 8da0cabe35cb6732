"""Typer command-line interface: thin layers over the library API (one module per verb group)."""
