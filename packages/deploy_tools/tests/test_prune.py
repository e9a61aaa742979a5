"""`setup apply --prune` against a real Prefect server (the session's `prefect_harness`).

Each test has its own workspace name (AIRNUB_WORKSPACE), so the marker of what it applies is
its own: the session's other tests' objects on the same server are another scope's.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from deploy_tools.local.service import apply_setup
from deploy_tools.local.stack import Ports, ProcessStack
from deploy_tools.reporting import DeployError
from deploy_tools.settings import AirnubSettings, load_settings
from deploy_tools.setup import Change
from deploy_tools.setup.prune import Scope, scope_of

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(autouse=True)
def _no_optional_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ALPHA_S3_BUCKET", "ALPHA_SOURCE_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def settings(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> AirnubSettings:
    monkeypatch.setenv("AIRNUB_WORKSPACE", f"prune-test-{uuid.uuid4().hex[:8]}")
    return load_settings(checkout)


def apply(settings: AirnubSettings, reporter: Any, **flags: bool) -> list[Change]:
    """`airnub setup apply [--prune] [--dry-run] [--yes]` against the harness's server."""
    from prefect.settings import PREFECT_API_URL

    url = str(PREFECT_API_URL.value())
    stack = ProcessStack(settings, Ports(4200, 8765))  # its values only; the harness serves
    return apply_setup(settings, stack, reporter, api_url=url, **flags)


def call(work: Any) -> Any:
    """`await work(client)` with a client of the harness's server."""
    from prefect.client.orchestration import get_client

    async def go() -> Any:
        async with get_client() as client:
            return await work(client)

    return asyncio.run(go())


def deployment_names(flow: str) -> list[str]:
    async def work(client: Any) -> list[str]:
        from prefect.client.schemas.filters import FlowFilter, FlowFilterName

        deps = await client.read_deployments(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow]))
        )
        return sorted(d.name for d in deps)

    names: list[str] = call(work)
    return names


def variable(name: str) -> Any:
    return call(lambda c: c.read_variable_by_name(name))


def deleted(changes: list[Change]) -> list[tuple[str, str]]:
    return sorted((c.kind, c.name) for c in changes if c.action == "deleted")


def test_the_marker_is_scoped_by_workspace_and_stack(settings: AirnubSettings) -> None:
    local, remote = scope_of(settings, "local"), scope_of(settings, "remote")
    assert local.tag == f"airnub:{settings.workspace}:local"
    assert local.tag != remote.tag and local.inventory != remote.inventory
    assert Scope("airnub-fixture-checkout", "local").tag == "airnub:airnub-fixture-checkout:local"
    assert Scope("My.Team-A", "remote").inventory == "airnub_blocks_my_team_a_remote"


def test_a_renamed_deployment_leaves_exactly_one(
    settings: AirnubSettings, checkout: Path, reporter: Any
) -> None:
    apply(settings, reporter)
    assert "local" in deployment_names("alpha_ingest")
    tags = call(lambda c: c.read_deployment_by_name("alpha_ingest/local")).tags
    assert tags == ["alpha", "local", scope_of(settings, "local").tag]
    local = checkout / "deploy/projects/alpha/prefect.local.yaml"
    text = local.read_text()
    local.write_text(text.replace("  - name: local\n", "  - name: local-renamed\n", 1))

    changes = apply(settings, reporter, prune=True)

    names = deployment_names("alpha_ingest")  # the session's other tests may have made others
    assert "local-renamed" in names and "local" not in names
    assert deleted(changes) == [("deployment", "alpha_ingest/local")]
    assert ("info", "  deployment alpha_ingest/local: deleted (its scheduled runs too)") in (
        reporter.calls
    )
    assert "local" in deployment_names("alpha_process")  # the others stay


def test_removed_variable_and_block_go_and_what_airnub_did_not_make_stays(
    settings: AirnubSettings, checkout: Path, reporter: Any
) -> None:
    alpha = checkout / "deploy/projects/alpha"
    extra_var = alpha / "variables/alpha_extra.yaml"
    extra_var.write_text("name: alpha_extra\nvalue: 1\n")
    extra_block = alpha / "blocks/alpha-extra.yaml"
    extra_block.write_text("type: local-file-system\nname: alpha-extra\ndata: {basepath: /tmp}\n")
    apply(settings, reporter)
    assert variable("alpha_extra").value == 1

    async def by_hand(client: Any) -> None:  # no marker; another checkout's marker
        from prefect.blocks.system import Secret
        from prefect.client.schemas.actions import VariableCreate

        await client.create_variable(VariableCreate(name="made_by_hand", value=1))
        other = Scope("another-workspace", "local").tag
        await client.create_variable(VariableCreate(name="another_ws", value=1, tags=[other]))
        flow_id = await client.create_flow_from_name("alpha_ingest")
        await client.create_deployment(flow_id=flow_id, name="by-hand", tags=["alpha"])
        await Secret(value="x").save("made-by-hand", overwrite=True, client=client)

    call(by_hand)
    extra_var.unlink()
    extra_block.unlink()

    changes = apply(settings, reporter, prune=True)

    assert deleted(changes) == [
        ("block", "local-file-system/alpha-extra"),
        ("variable", "alpha_extra"),
    ]
    assert variable("alpha_extra") is None
    assert variable("made_by_hand") is not None and variable("another_ws") is not None
    assert {"by-hand", "local"} <= set(deployment_names("alpha_ingest"))
    from prefect.blocks.system import Secret
    from prefect.filesystems import LocalFileSystem

    assert Secret.load("made-by-hand").get() == "x"
    with pytest.raises(ValueError, match="Unable to find block document"):
        LocalFileSystem.load("alpha-extra")
    inventory = variable(scope_of(settings, "local").inventory)
    assert inventory.value == ["local-file-system/alpha-local-storage"]


def test_without_prune_the_plan_lists_what_is_in_no_file_and_deletes_nothing(
    settings: AirnubSettings, checkout: Path, reporter: Any
) -> None:
    extra = checkout / "deploy/projects/alpha/variables/alpha_extra.yaml"
    extra.write_text("name: alpha_extra\nvalue: 1\n")
    apply(settings, reporter)
    extra.unlink()
    changes = apply(settings, reporter)
    assert deleted(changes) == []
    assert variable("alpha_extra") is not None
    assert "prune: 1 object(s) airnub made are in no file (--prune deletes them):" in (
        reporter.of("info")
    )
    assert "  variable alpha_extra" in reporter.of("info")


def test_dry_run_shows_the_deletions_and_writes_nothing(
    settings: AirnubSettings, checkout: Path, reporter: Any
) -> None:
    alpha = checkout / "deploy/projects/alpha"
    extra = alpha / "variables/alpha_extra.yaml"
    extra.write_text("name: alpha_extra\nvalue: 1\n")
    apply(settings, reporter)
    extra.unlink()
    (alpha / "variables/alpha_new.yaml").write_text("name: alpha_new\nvalue: 2\n")

    changes = apply(settings, reporter, prune=True, dry_run=True)

    assert changes == []
    assert "  would delete variable alpha_extra" in reporter.of("info")
    assert variable("alpha_extra") is not None  # nothing deleted
    assert variable("alpha_new") is None  # nothing applied
    assert "setup: dry run: nothing was applied or deleted" in reporter.of("finished")


def test_a_prune_of_more_than_half_is_refused_without_yes(
    settings: AirnubSettings, checkout: Path, reporter: Any
) -> None:
    apply(settings, reporter)  # 4 deployments, a variable, a block: 6 managed
    for project in ("alpha", "beta"):  # every deployment renamed: 4 of 6 would go
        local = checkout / f"deploy/projects/{project}/prefect.local.yaml"
        local.write_text(local.read_text().replace("  - name: local\n", "  - name: moved\n"))

    with pytest.raises(DeployError, match="prune refused: it would delete 4 object"):
        apply(settings, reporter, prune=True)

    message = reporter.of("failure")[-1]
    assert "more than half of the 6 airnub manages" in message
    assert "deployment alpha_ingest/local (its scheduled runs go with it)" in message
    assert "--yes" in message
    names = deployment_names("beta_flow")
    assert "local" in names and "moved" not in names  # nothing applied, nothing deleted

    changes = apply(settings, reporter, prune=True, yes=True)
    assert len(deleted(changes)) == 4
    for flow in ("beta_flow", "alpha_pipeline"):
        names = deployment_names(flow)
        assert "moved" in names and "local" not in names


def test_the_cli_passes_prune_dry_run_and_yes(
    settings: AirnubSettings, checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.settings import PREFECT_API_URL
    from typer.testing import CliRunner

    from deploy_tools.cli import app

    extra = checkout / "deploy/projects/alpha/variables/alpha_extra.yaml"
    extra.write_text("name: alpha_extra\nvalue: 1\n")
    monkeypatch.chdir(checkout)
    url = ["--api-url", str(PREFECT_API_URL.value())]
    runner = CliRunner()
    assert runner.invoke(app, ["setup", "apply", *url]).exit_code == 0
    extra.unlink()
    dry = runner.invoke(app, ["setup", "apply", *url, "--prune", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would delete variable alpha_extra" in dry.output
    assert variable("alpha_extra") is not None
    done = runner.invoke(app, ["setup", "apply", *url, "--prune", "--yes"])
    assert done.exit_code == 0, done.output
    assert "variable alpha_extra: deleted" in done.output
    assert variable("alpha_extra") is None


def test_every_remote_file_counts_and_an_unreadable_one_stops_the_prune(checkout: Path) -> None:
    from deploy_tools.setup.prune import remote_deployment_names

    alpha = checkout / "deploy/projects/alpha"
    files = sorted(p for p in alpha.glob("prefect*.yaml") if p.name != "prefect.local.yaml")
    names = remote_deployment_names(files, checkout)
    assert len(files) == 3 and len({n.split("/")[1] for n in names}) == 3  # one name per file
    broken = alpha / "prefect.broken.yaml"
    broken.write_text("deployments:\n  - name: x\n    entrypoint: no.such:flow\n")
    with pytest.raises(DeployError, match=r"cannot read the deployments of prefect\.broken\.yaml"):
        remote_deployment_names([broken], checkout)
