"""`airnub image`: build the reproducible worker image and prove two builds are bit-identical.

Also prints the built image's SBOM (`sbom`) and audits the locked set for known vulnerabilities
(`audit`).
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
        help="Base image (default: the digest-pinned one in Dockerfile.worker). Pulled only when "
        "missing and pinned by digest.",
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
    with_git: Annotated[
        bool,
        typer.Option(
            "--with-git",
            help="Add git (for Prefect's git_clone pull step): the hash-pinned Debian packages "
            "of deploy_tools/image/debs.lock, downloaded from a Debian mirror.",
        ),
    ] = False,
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
                with_git=with_git,
                source=config.image_source,
            )
        )
    except RuntimeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"built in {result.seconds:.0f} s", err=True)
    if result.sbom is not None:
        typer.echo(f"sbom: {result.sbom} (also /app/sbom.cdx.json in the image)", err=True)
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
def sbom(
    *,
    venv: Annotated[
        Path | None,
        typer.Option(help="Write the SBOM of this venv (with uv.lock's hashes) instead."),
    ] = None,
    image: Annotated[
        str | None, typer.Option(help="Image to read it from (default: image of [tool.airnub]).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Where to write it (default: stdout).")
    ] = None,
    project: ProjectOpt = Path(),
) -> None:
    """Print the CycloneDX SBOM of the built image (its /app/sbom.cdx.json), or of a venv.

    The image build writes it from what it installed (nothing is committed); `--venv` runs the
    same generator on a venv here (markers evaluated for this interpreter).
    """
    import subprocess
    import sys

    from deploy_tools.image import sbom as sbom_module

    if venv is not None:
        lock = project / "uv.lock"
        args = ["--lock", str(lock), "--venv", str(venv)]
        raise typer.Exit(sbom_module.main(args + (["--output", str(output)] if output else [])))
    tag = image or _settings(project).image
    proc = subprocess.run(
        ["docker", "run", "--rm", "--pull", "never", "--network", "none", "--entrypoint", "cat",
         tag, f"/app/{sbom_module.SBOM_NAME}"],
        capture_output=True,
    )  # fmt: skip
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip()
        typer.echo(f"error: no SBOM read from image {tag} (build it first): {detail}", err=True)
        raise typer.Exit(1)
    if output is None:
        sys.stdout.buffer.write(proc.stdout)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(proc.stdout)


@app.command()
def audit(
    *,
    allowlist: Annotated[
        Path | None, typer.Option(help="Allow-list (default: ci/audit-allowlist.toml).")
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(help="Where pip-audit's report is kept (default: .image/audit-report.json)."),
    ] = None,
    from_report: Annotated[
        Path | None, typer.Option(help="Check a recorded pip-audit JSON report instead.")
    ] = None,
    project: ProjectOpt = Path(),
) -> None:
    """pip-audit of uv.lock's runtime set; fails on any finding the allow-list does not allow."""
    from deploy_tools.image import audit as audit_module

    args = ["--project", str(project)]
    if report is not None:
        args += ["--report", str(report)]
    if allowlist is not None:
        args += ["--allowlist", str(allowlist)]
    if from_report is not None:
        args += ["--from-report", str(from_report)]
    raise typer.Exit(audit_module.main(args))
