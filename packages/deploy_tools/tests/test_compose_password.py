"""`.env`'s POSTGRES_PASSWORD by compose's dotenv rules, without Docker (tests/compose checks the
same values against `docker compose config`)."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from deploy_tools.local.stack import ComposeStack, Ports
from deploy_tools.local.stack.compose import project_name
from deploy_tools.local.stack.compose_password import (
    PasswordLineError,
    append_password,
    generate_password,
    password_line,
    read_password,
    volume_mismatch,
)
from deploy_tools.settings import load_settings

TRICKY = "$ @ / % ? # ' \" space \\"
# Values a user may pick, each with the characters compose's dotenv rules treat specially.
VALUES = [
    TRICKY,
    "p@ss:w/rd#50%",
    "it's",
    'say "hi"',
    "$HOME${X}$$",
    "\\n is not a newline",
    "ends with \\",
    "\\'",
    "  spaces kept  ",
    "é€ unicode",
    "#starts-with-hash",
    "'",
    generate_password(),
]


def env(tmp_path: Path, text: str) -> Path:
    path = tmp_path / ".env"
    path.write_text(text)
    return path


@pytest.mark.parametrize("value", VALUES)
def test_every_written_line_reads_back_as_the_same_password(tmp_path: Path, value: str) -> None:
    line = password_line(value)
    entry = read_password(env(tmp_path, f"AIRNUB_X=1\n{line}\n# end\n"))
    assert entry is not None
    assert (entry.line, entry.value) == (2, value)


def test_the_simplest_form_is_written() -> None:
    assert password_line("abc-DEF_1.2") == "POSTGRES_PASSWORD=abc-DEF_1.2"
    assert password_line('a b$c/#%"') == "POSTGRES_PASSWORD='a b$c/#%\"'"
    assert password_line("it's $5 \\") == 'POSTGRES_PASSWORD="it\'s \\$5 \\\\"'
    generated = generate_password()
    assert len(generated) >= 40
    assert password_line(generated) == f"POSTGRES_PASSWORD={generated}"  # unquoted, as is


@pytest.mark.parametrize("value", ["", "two\nlines", "cr\rhere", "nul\0"])
def test_what_cannot_be_represented_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="non-empty and on one line"):
        password_line(value)


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ("POSTGRES_PASSWORD=plain", "plain"),
        ("export POSTGRES_PASSWORD=plain", "plain"),
        ("  POSTGRES_PASSWORD = plain  # a comment", "plain"),
        ("POSTGRES_PASSWORD: plain", "plain"),
        ("POSTGRES_PASSWORD='a $b # c'  # a comment", "a $b # c"),
        ("POSTGRES_PASSWORD='back\\slash\\\\'", "back\\slash\\\\"),
        ('POSTGRES_PASSWORD="a\\$b \\"q\\" \\\\"', 'a$b "q" \\'),
        ("POSTGRES_PASSWORD=p@ss:w/rd%?", "p@ss:w/rd%?"),
    ],
)
def test_lines_compose_reads_as_written_are_accepted(tmp_path: Path, line: str, value: str) -> None:
    entry = read_password(env(tmp_path, line + "\n"))
    assert entry is not None and entry.value == value


HINTS = {
    "'": "Write it between single quotes:\n  POSTGRES_PASSWORD='<the password>'",
    '"': 'Write it between double quotes, with a \\ before each \\, " and $ in it:\n'
    '  POSTGRES_PASSWORD="<the password, escaped>"',
    "a": "Write it unquoted:\n  POSTGRES_PASSWORD=<the password>",
}


@pytest.mark.parametrize(
    ("line", "why", "fix"),
    [
        ('POSTGRES_PASSWORD="a$b c"', "replaces `$…` in double quotes",
         "POSTGRES_PASSWORD='a$b c'"),
        ("POSTGRES_PASSWORD=a$b", "replaces `$…` in an unquoted value",
         "POSTGRES_PASSWORD='a$b'"),
        ("POSTGRES_PASSWORD=my secret words", "whitespace in an unquoted value",
         "POSTGRES_PASSWORD='my secret words'"),
        ("POSTGRES_PASSWORD=a#b", "`#` in an unquoted value", "POSTGRES_PASSWORD='a#b'"),
        ('POSTGRES_PASSWORD="a\\nb"', "reads `\\n` in double quotes as an escape",
         'POSTGRES_PASSWORD="a\\\\nb"'),
        ("POSTGRES_PASSWORD='it\\'s'", "turns \\' inside single quotes into '",
         'POSTGRES_PASSWORD="it\'s"'),
        ("POSTGRES_PASSWORD='abc' def", "text after the closing quote is dropped",
         "POSTGRES_PASSWORD=abc"),
        ("POSTGRES_PASSWORD=it's", "with \\ or quotes", 'POSTGRES_PASSWORD="it\'s"'),
    ],
)  # fmt: skip
def test_lines_compose_would_change_are_refused_with_the_line_to_write(
    tmp_path: Path, line: str, why: str, fix: str
) -> None:
    path = env(tmp_path, f"# settings\n{line}\n")
    with pytest.raises(PasswordLineError) as caught:
        read_password(path)
    message = str(caught.value)
    assert message.startswith(f"{path} line 2: POSTGRES_PASSWORD would not reach PostgreSQL")
    assert why in message
    # The form of the line to write is given, never the password (a terminal can be recorded).
    assert f"{HINTS.get(fix[18], HINTS['a'])}\n(nothing was started)" in message
    assert (fix[19:-1] if fix[18] in "'\"" else fix[18:]) not in message
    # The line of that form is accepted and gives the meant value.
    (path.parent / "fixed.env").write_text(fix + "\n")
    assert read_password(path.parent / "fixed.env") is not None


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("POSTGRES_PASSWORD=\n", "has no value. Remove the line"),
        ("POSTGRES_PASSWORD\n", "has no value"),
        ("POSTGRES_PASSWORD=a\nPOSTGRES_PASSWORD=b\n", "set on lines 1, 2; compose uses the last"),
        ("POSTGRES_PASSWORD='open\n", "single quote is not closed on its line"),
        ('POSTGRES_PASSWORD="open\n', "double quote is not closed on its line"),
        ("POSTGRES_PASSWORD=''\n", "the value is empty. Choose another password"),
    ],
)
def test_broken_lines_are_refused_naming_what_is_wrong(
    tmp_path: Path, text: str, match: str
) -> None:
    with pytest.raises(PasswordLineError, match=match):
        read_password(env(tmp_path, text))


def test_no_file_or_no_line_means_none(tmp_path: Path) -> None:
    assert read_password(tmp_path / "missing.env") is None
    assert read_password(env(tmp_path, "AIRNUB_SERVER_PORT=4300\n#POSTGRES_PASSWORD=x\n")) is None


def test_append_keeps_the_other_lines_and_makes_the_file_private(tmp_path: Path) -> None:
    path = env(tmp_path, "AIRNUB_DATA_PORT=9999")  # no trailing newline
    append_password(path, TRICKY)
    assert path.read_text().splitlines() == ["AIRNUB_DATA_PORT=9999", password_line(TRICKY)]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    entry = read_password(path)
    assert entry is not None and entry.value == TRICKY


def test_the_mismatch_message_names_the_volume_and_both_ways_out(tmp_path: Path) -> None:
    message = volume_mismatch("p_pgdata-15", tmp_path / ".env")
    assert message.startswith(
        f"the PostgreSQL volume p_pgdata-15 was initialised with another password than "
        f"POSTGRES_PASSWORD in {tmp_path / '.env'}"
    )
    assert "restore the old password" in message
    assert "deploy:down --volumes --yes" in message
    assert "has no POSTGRES_PASSWORD" in volume_mismatch("v", tmp_path / ".env", missing=True)


# -- how ComposeStack uses it (no Docker) ---------------------------------------------------
def test_commands_that_only_look_use_the_recorded_project_and_need_no_env(
    make_checkout: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_checkout("checkout")
    monkeypatch.setenv("AIRNUB_COMPOSE_FILES", '["deploy/override.yaml"]')
    started = ComposeStack(load_settings(root), Ports(4300, 8800))
    started.record_project()  # as `up` does
    monkeypatch.delenv("AIRNUB_COMPOSE_FILES")  # e.g. it was in the .env that is now gone
    monkeypatch.setenv("POSTGRES_PASSWORD", "from-the-shell")
    later = ComposeStack(load_settings(root), Ports(4300, 8800))
    root = later.settings.project_dir
    files = [
        "-f",
        str(root / "deploy" / "compose.yaml"),
        "-f",
        str(root / "deploy" / "override.yaml"),
    ]
    assert later.compose_args(looking=True) == [
        "docker", "compose", *files, "-p", project_name(root)
    ]  # fmt: skip
    (root / ".env").write_text("POSTGRES_PASSWORD=x\n")
    assert later.compose_args(looking=True)[-4:-2] == ["--env-file", str(root / ".env")]
    # `.env` is the password's one source: the shell's never reaches compose.
    assert "POSTGRES_PASSWORD" not in later._env(looking=False)
    assert later._env(looking=True)["POSTGRES_PASSWORD"] == "unused-by-this-command"


def test_compose_warnings_are_shown_once_each(make_checkout: Callable[[str], Path]) -> None:
    notes: list[str] = []
    s = ComposeStack(load_settings(make_checkout("checkout")), Ports(4300, 8800), note=notes.append)
    warning = 'time="2026-12-02T06:39:50Z" level=warning msg="The \\"b\\" variable is not set."'
    s._show_warnings(f"{warning}\n{warning}\n Container x  Started\n")
    assert notes == ['docker compose: The "b" variable is not set.']
