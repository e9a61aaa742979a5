"""`airnub image`: build the reproducible worker image and prove two builds are bit-identical.

Also makes the offline images (`base`, `postgres`) with debootstrap when no registry answers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from deploy_tools.settings import AirnubSettings

app = typer.Typer(no_args_is_help=True)

BaseOpt = Annotated[
    str | None,
    typer.Option(
        "--base-image",
        envvar="AIRNUB_BASE_IMAGE",
        help="Base image (default: the digest-pinned one in Dockerfile.worker). Never pulled.",
    ),
]
ProjectOpt = Annotated[Path, typer.Option("--project", help="Repository root.")]


def _settings(project: Path) -> AirnubSettings:
    from pydantic import ValidationError

    from deploy_tools.settings import ProjectNotFoundError, load_settings

    try:
        return load_settings(project)
    except (ProjectNotFoundError, ValidationError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


@app.command()
def build(
    *,
    tag: Annotated[
        str | None, typer.Option(help="Image name:tag to load (default: image of [tool.airnub]).")
    ] = None,
    base_image: BaseOpt = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Ignore the build cache.")] = False,
    project: ProjectOpt = Path(),
) -> None:
    """Build Dockerfile.worker deterministically, load it, print ``name@sha256:…``."""
    from deploy_tools.image.build import BuildOptions, build_image

    config = _settings(project)
    os.environ.setdefault("BUILDX_NO_DEFAULT_ATTESTATIONS", "1")
    try:
        result = build_image(
            BuildOptions(
                project=project,
                tag=tag or config.image,
                base_image=base_image or config.base_image,
                no_cache=no_cache,
                source=config.image_source,
            )
        )
    except RuntimeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"built in {result.seconds:.0f} s", err=True)
    typer.echo(result.ref)


@app.command()
def verify(
    *,
    base_image: BaseOpt = None,
    ref: Annotated[str, typer.Option(help="Git revision to build twice.")] = "HEAD",
    project: ProjectOpt = Path(),
) -> None:
    """Build twice from clean copies, no cache; exit 1 and name the differing files on mismatch."""
    from deploy_tools.image.verify import verify as run_verify

    config = _settings(project)
    try:
        report = run_verify(
            project,
            base_image=base_image or config.base_image,
            ref=ref,
            source=config.image_source,
        )
    except RuntimeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(report.describe())
    if not report.identical:
        raise typer.Exit(1)


@app.command()
def base(
    *,
    tag: Annotated[str, typer.Option(help="Tag of the loaded image.")] = "airnub/base:bookworm",
) -> None:
    """Make an offline Debian base image (debootstrap from the apt mirror) and load it."""
    from deploy_tools.image.base import make_base_image

    typer.echo(make_base_image(tag))


@app.command()
def postgres(
    *,
    tag: Annotated[
        str, typer.Option(help="Tag of the loaded image.")
    ] = "airnub/postgres:15-bookworm",
) -> None:
    """Make an offline PostgreSQL 15 image (the official image's interface) and load it."""
    from deploy_tools.image.base import make_postgres_image

    typer.echo(make_postgres_image(tag))
