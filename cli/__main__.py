"""``python3 -P -m e2a.cli``: what the packaged /usr/bin/e2a runs."""

from e2a.cli.main import cli

cli(prog_name="e2a")
