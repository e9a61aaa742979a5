"""The `airnub` command: groups are assembled here, one module per group.

Heavy imports (prefect, docker) stay inside command bodies so `airnub --help` is instant.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="airnub",
    help="Run, deploy and ship the airnub Prefect pipelines.",
    no_args_is_help=True,
    add_completion=False,
)

# (module under deploy_tools.cli, group name, help). A group module exposes `app`.
_GROUPS = [
    ("stack", "stack", "Start, stop and inspect the local Prefect stack."),
    ("setup", "setup", "Apply work pools, variables, blocks and deployments from deploy/."),
    ("demo", "demo", "Run the projects' demo deployments through the stack."),
    ("check", "check", "Offline checks (entrypoint import gate)."),
    ("image", "image", "Build and verify the reproducible worker image."),
    ("deploy", "deploy", "One-command deploys: local and remote."),
    ("new", "new", "Scaffold a new project (flows package + deploy files)."),
    ("remove", "remove", "Remove a project that `new` made (its two folders)."),
]

for _module, _name, _help in _GROUPS:
    app.add_typer(
        importlib.import_module(f"deploy_tools.cli.{_module}").app, name=_name, help=_help
    )


def main() -> None:
    """Console entry point.

    A lost connection to the Prefect server that a command did not handle itself still ends in
    one line, not a traceback; any other error is shown as the bug it is.
    """
    try:
        app()
    except Exception as exc:
        from deploy_tools.prefect_api import connection_failure, describe

        lost = connection_failure(exc)
        if lost is None:
            raise
        from deploy_tools.cli.terminal import terminal

        message = f"lost the connection to the Prefect server ({describe(lost)})"
        raise SystemExit(terminal.fail(message).exit_code) from None
