"""Prefect's `{{ $NAME }}` templating in setup files: Prefect's own code resolves it, and a
variable that is not set is refused (Prefect would put an empty text)."""

from __future__ import annotations

import datetime
import os

import pytest

from deploy_tools.setup.templating import env_names, render, template_problems


def test_render_fills_whole_and_embedded_placeholders_and_keeps_other_values() -> None:
    value = {
        "a": ["{{ $BASE }}/x.csv", {"b": "{{$POOL}}"}],
        "n": 3,
        "flag": True,
        "day": datetime.date(2020, 1, 2),  # YAML dates: Prefect's apply_values refuses them
        "empty": "{{ $EMPTY }}",
    }
    env = {"BASE": "http://127.0.0.1:1", "POOL": "p", "EMPTY": ""}
    assert render(value, env) == {
        "a": ["http://127.0.0.1:1/x.csv", {"b": "p"}],
        "n": 3,
        "flag": True,
        "day": datetime.date(2020, 1, 2),
        "empty": "",
    }
    assert template_problems(value, env, "value") == []


def test_render_gives_what_prefect_deploy_gives_with_the_same_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.utilities.templating import apply_values

    value = {"pull": [{"step": {"directory": "{{ $DIR }}", "id": "{{ $DIR }}-{{ $POOL }}"}}]}
    env = {"DIR": "/srv/x", "POOL": "local"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    # `prefect deploy` applies os.environ this way (prefect/cli/deploy/_core.py)
    assert render(value, env) == apply_values(value, dict(os.environ), remove_notset=False)


def test_render_leaves_the_environment_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRNUB_T_NEW", raising=False)
    monkeypatch.setenv("AIRNUB_T_OLD", "before")
    env = {"AIRNUB_T_NEW": "n", "AIRNUB_T_OLD": "o"}
    assert render("{{ $AIRNUB_T_NEW }} {{ $AIRNUB_T_OLD }}", env) == "n o"
    assert "AIRNUB_T_NEW" not in os.environ
    assert os.environ["AIRNUB_T_OLD"] == "before"


def test_render_keeps_placeholders_for_later() -> None:
    value = ["{{ prefect.blocks.secret.token }}", "{{ code.bucket }}/{{ $B }}"]
    assert render(value, {"B": "b"}) == ["{{ prefect.blocks.secret.token }}", "{{ code.bucket }}/b"]
    assert env_names(value) == {"B"}


def test_an_unset_variable_names_itself_and_its_key() -> None:
    assert template_problems({"value": [{}, {"url": "{{ $BASE }}/x"}]}, {}, "") == [
        "value[1].url: environment variable BASE is not set (used as {{ $BASE }})"
    ]


def test_other_placeholders_are_refused_unless_kept() -> None:
    value = {"pull": ["{{ prefect.variables.x }}"], "tags": ["{{ build.tag }}"]}
    problems = template_problems(value, {}, "", keep_others=lambda key: key.startswith("pull"))
    assert problems == [
        "tags[0]: {{ build.tag }}: setup apply resolves only environment variables here "
        "({{ $NAME }})"
    ]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("${BASE}/x", "${BASE} is not substituted: write Prefect's {{ $NAME }} instead"),
        ("${REGION:-us-east-1}", "${REGION:-us-east-1} is not substituted"),
        ("{{ $REGION:-us-east-1 }}", "{{ $REGION:-us-east-1 }} is not a placeholder Prefect"),
        ("{{ $X | default('a') }}", "is not a placeholder Prefect understands"),
    ],
)
def test_syntax_prefect_does_not_substitute_is_refused(text: str, says: str) -> None:
    (problem,) = template_problems({"k": text}, {"BASE": "b", "REGION": "r", "X": "x"}, "")
    assert problem.startswith("k: ")
    assert says in problem
