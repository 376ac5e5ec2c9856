"""The ``qosbatch`` command: thin typer commands that parse, call one library function, print.

Every command module registers itself on ``app``. A ``UserError`` raised anywhere
below becomes one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from qosbatch.core.errors import UserError


class _Group(TyperGroup):
    """Turns a UserError from any command into one line and exit status 2."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as exc:
            typer.echo(f"qosbatch: error: {exc}", err=True)
            raise typer.Exit(2) from None


app = typer.Typer(
    name="qosbatch",
    cls=_Group,
    help="QoS-aware automated batch inference: profile, predict, plan and serve DNN models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def main() -> None:
    app()


# The command modules register themselves on `app`; imported last because they import it.
from qosbatch.cli import (  # noqa: E402, F401
    deploy_cmds,
    job_cmds,
    plan_cmds,
    profile_cmds,
    queue_cmds,
    rl_cmds,
    serve_cmds,
    sim_cmds,
)
