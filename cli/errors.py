"""One-line CLI errors shared by every command module (kept apart from ``cli.main`` so that command
modules can import it without a circular import when run as ``python -m cli.main``)."""
from __future__ import annotations

import click


class CLIError(click.ClickException):
    def show(self, file=None):
        click.echo(f"gankit: error: {self.format_message()}", err=True)


def _user_errors():
    from generators.spec import CheckpointError
    from generators.registry import RegistryError
    return (CheckpointError, RegistryError, ValueError, OSError)


def run_safely(fn):
    """Turn known user-facing exceptions into one-line CLI errors (no traceback)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except click.ClickException:
            raise
        except _user_errors() as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CLIError(msg) from None
    return wrapper
