"""Placeholder until this verb group is implemented."""

import typer


def register(app: typer.Typer) -> None:
    """Add this group's commands to the app."""
