"""Placeholder replaced by the sandbox work."""
import click


@click.group()
def dev() -> None:
    """Developer sandbox."""
