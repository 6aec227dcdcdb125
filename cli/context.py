"""What every command needs: the configuration, loaded once, failing in one line."""

from __future__ import annotations

import functools

import click

from e2a.core import config
from e2a.core.runtime import logs


@functools.cache
def load_config() -> config.Config:
    try:
        cfg = config.load()
    except config.ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    logs.setup(cfg.log.level, cfg.log.format)
    return cfg
