"""End to end through Prefect: a source's credential is stored and printed nowhere.

`setup apply` saves the Secret block from an environment value and the `alpha_sources`
Variable naming it; flows then fetch from a loopback server that wants the token. Then
every way a credential could sneak in through a URL is tried: a flow parameter, a
subflow, a deployment run, a variable file. Afterwards the token must appear in no file
of the data root, nothing printed, and no column of any table of Prefect's database.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import yaml
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.checkout import copy_project

pytestmark = pytest.mark.usefixtures("prefect_harness")

REPO = Path(__file__).resolve().parents[2]
TOKEN = f"tok-{secrets.token_hex(12)}"  # unique: nothing else can contain it
BODY = b"id,value\n1,10\n2,20\n"


@pytest.fixture
def guarded(httpserver: HTTPServer) -> str:
    """`/guarded.csv`: 200 with `Authorization: Bearer <TOKEN>`, 401 otherwise."""

    def handler(request: Request) -> Response:
        if request.headers.get("Authorization") == f"Bearer {TOKEN}":
            return Response(BODY, content_type="text/csv")
        return Response("who are you?", status=401)

    httpserver.expect_request("/guarded.csv").respond_with_handler(handler)
    return httpserver.url_for("/").rstrip("/")


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "outputs"
    monkeypatch.setenv("ALPHA_DATA_ROOT", str(root))
    monkeypatch.setenv("ALPHA_MAX_RETRIES", "0")
    return root


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the repo's deploy/ and [tool.airnub] table (the project folder)."""
    copy_project(tmp_path)
    return tmp_path


@pytest.fixture
def deploy_dir(checkout: Path) -> Path:
    """Alpha's deploy folder with an `alpha_sources` that needs the token (the supported way)."""
    deploy = checkout / "deploy" / "projects" / "alpha"
    write_sources(deploy, [guarded_source("{{ $STACK_DEMO_DATA_URL }}/guarded.csv")])
    return deploy


def guarded_source(url: str, name: str = "guarded") -> dict[str, Any]:
    return {"name": name, "url": url, "format": "csv", "auth": {"secret": "alpha-source-token"}}


def write_sources(deploy: Path, value: list[dict[str, Any]]) -> None:
    doc = {
        "name": "alpha_sources",
        "validate_with": "pipeline_core.sources:parse_sources",
        "value": value,
    }
    (deploy / "variables" / "alpha_sources.yaml").write_text(yaml.safe_dump(doc))


async def setup_apply(deploy: Path, env: dict[str, str]) -> bool:
    """`airnub setup apply`'s validate-then-apply (the deploy service, the CLI's reporter)
    for the checkout holding `deploy`, with `env` over the stack's values, against the
    test harness's server."""
    from prefect.settings import PREFECT_API_URL

    from deploy_tools.cli.terminal import RichReporter, terminal
    from deploy_tools.local.service import apply_setup
    from deploy_tools.local.stack import Ports, ProcessStack
    from deploy_tools.reporting import DeployError
    from deploy_tools.settings import load_settings

    api_url = PREFECT_API_URL.value()
    assert api_url
    settings = load_settings(deploy.parents[2])
    real = ProcessStack(settings, Ports(4200, 8765))

    class Stack:  # the process stack's values, with the test's own on top
        def apply_env(self, project: Any = None) -> dict[str, str]:
            return {**real.apply_env(project), **env}

    def apply() -> bool:
        try:
            apply_setup(settings, Stack(), RichReporter(terminal), api_url=api_url)  # type: ignore[arg-type]
        except DeployError:
            return False
        return True

    # apply_setup runs its own event loop (it is a CLI step): give it a thread.
    return await asyncio.to_thread(apply)


def database_file() -> Path:
    from prefect.settings import get_current_settings

    url = get_current_settings().server.database.connection_url
    assert url and url.get_secret_value().startswith("sqlite+aiosqlite:///")
    return Path(url.get_secret_value().removeprefix("sqlite+aiosqlite:///"))


def columns_holding(db: Path, needle: str) -> dict[str, int]:
    """`table.column` -> how many rows hold `needle`, over every column of every table."""
    found: dict[str, int] = {}
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            cursor = con.execute(f'SELECT * FROM "{table}"')
            names = [d[0] for d in cursor.description]
            for row in cursor:
                for column, value in zip(names, row, strict=True):
                    text = value.decode(errors="replace") if isinstance(value, bytes) else value
                    if isinstance(text, str) and needle in text:
                        found[f"{table}.{column}"] = found.get(f"{table}.{column}", 0) + 1
    finally:
        con.close()
    return found


async def wait_until_recorded(db: Path, flow_run_id: UUID, event: str) -> None:
    """Until the server has persisted `event` of the run (events and logs ship in batches)."""
    from prefect.logging.handlers import APILogHandler

    await APILogHandler.aflush()
    for _ in range(300):
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            (n,) = con.execute(
                "SELECT count(*) FROM events WHERE event = ? AND resource_id = ?",
                (event, f"prefect.flow-run.{flow_run_id}"),
            ).fetchone()
        finally:
            con.close()
        if n:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{event} of flow run {flow_run_id} never reached the database")


async def test_the_token_is_stored_and_printed_nowhere(
    guarded: str,
    data_root: Path,
    deploy_dir: Path,
    checkout: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from prefect import get_client
    from prefect.blocks.system import Secret
    from prefect.exceptions import PrefectHTTPStatusError
    from prefect.variables import Variable

    from flows_alpha.ingest import ingest
    from flows_alpha.pipeline import alpha_pipeline
    from pipeline_core.manifest import EntryStatus, Manifest

    leaky_url = f"http://reader:{TOKEN}@{guarded.removeprefix('http://')}/guarded.csv"
    env = {
        "STACK_PROJECT_DIR": str(checkout),
        "STACK_DATA_ROOT": str(data_root),
        "STACK_DEMO_DATA_URL": guarded,
        "ALPHA_SOURCE_TOKEN": TOKEN,
    }
    try:
        # 1. setup apply: the Secret block comes from the environment, the Variable names it.
        assert await setup_apply(deploy_dir, env)
        assert (await Secret.aload("alpha-source-token")).get() == TOKEN
        assert (await Variable.aget("alpha_sources"))[0]["auth"] == {"secret": "alpha-source-token"}

        # 2. The ingest flow (Variable) reads the block inside the download task: 200.
        state = await ingest(return_state=True)
        assert state.is_completed(), state.message
        manifest = Manifest.model_validate_json((data_root / "manifests/latest.json").read_text())
        assert manifest.entries[0].status is EntryStatus.DOWNLOADED
        assert (data_root / (manifest.entries[0].path or "")).read_bytes() == BODY

        # 3. Without auth the server says 401: the token really is what got us in.
        state = await ingest(
            sources=[{"name": "anonymous", "url": f"{guarded}/guarded.csv"}], return_state=True
        )
        assert state.is_failed() and "HTTP 401" in (state.message or "")

        # 4. A URL with user info, as a flow parameter and through a subflow: refused by
        # our validation, and the parameters Prefect records are redacted (SourcesFlow).
        refused = []
        for flow_ in (ingest, alpha_pipeline):
            state = await flow_(sources=[{"name": "leaky", "url": leaky_url}], return_state=True)
            assert state.is_failed()
            assert "source 'leaky': the URL holds a user name or password" in (state.message or "")
            refused.append(state.state_details.flow_run_id)
        # ...also when the value is not even a list (Prefect's own parameter validation would
        # print the whole value if it refused it: ours refuses it instead).
        state = await ingest(sources={"name": "leaky", "url": leaky_url}, return_state=True)
        assert state.is_failed() and "Input should be a valid list" in (state.message or "")
        async with get_client() as client:
            run = await client.read_flow_run(refused[0])
            assert run.parameters["sources"][0]["url"] == guarded + "/guarded.csv"

            # 5. A deployment run with such a URL: the server checks the published
            # parameter schema and refuses to create the run; a clean URL is accepted.
            deployment = await client.read_deployment_by_name("alpha_ingest/local")
            assert deployment.enforce_parameter_schema
            with pytest.raises(PrefectHTTPStatusError) as info:
                await client.create_flow_run_from_deployment(
                    deployment.id, parameters={"sources": [{"name": "leaky", "url": leaky_url}]}
                )
            assert info.value.response.status_code == 409
            accepted = await client.create_flow_run_from_deployment(
                deployment.id,
                parameters={"sources": [guarded_source(f"{guarded}/guarded.csv")]},
            )
            await client.delete_flow_run(accepted.id)

        # 6. setup apply refuses a variable file and deployment parameters with such a URL
        # before anything reaches Prefect: the Variable keeps its value.
        write_sources(deploy_dir, [guarded_source(leaky_url, name="leaky")])
        assert not await setup_apply(deploy_dir, env)
        write_sources(deploy_dir, [guarded_source("{{ $STACK_DEMO_DATA_URL }}/guarded.csv")])
        local = deploy_dir / "prefect.local.yaml"
        doc = yaml.safe_load(local.read_text())
        doc["deployments"][0]["parameters"] = {"sources": [{"name": "x", "url": leaky_url}]}
        local.write_text(yaml.safe_dump(doc))
        assert not await setup_apply(deploy_dir, env)
        assert (await Variable.aget("alpha_sources"))[0]["name"] == "guarded"
    finally:
        await Variable.aunset("alpha_sources")

    printed = capfd.readouterr()
    assert "source 'leaky': the URL holds a user name or password" in printed.err
    assert "a URL with a user name or password" in printed.err  # setup's refusal
    assert "block secret/alpha-source-token" in printed.out  # setup's apply lines

    # The verdict: the token is in no file, no captured output, no table.
    db = database_file()
    await wait_until_recorded(db, refused[-1], "prefect.flow-run.Failed")
    assert TOKEN not in printed.out + printed.err
    for path in data_root.rglob("*"):
        assert not path.is_file() or TOKEN.encode() not in path.read_bytes(), path
    assert columns_holding(db, TOKEN) == {}
    # ...while the scan does see what was recorded (it is not looking at an empty file).
    assert columns_holding(db, "source 'leaky': the URL holds a user name or password")
    assert columns_holding(db, "guarded.csv")
