"""Validation of a sources value."""

from __future__ import annotations

import pytest

from pipeline_core.sources import SourcesError, parse_sources


def test_valid_list_from_json_text():
    sources = parse_sources('[{"name": "a", "url": "http://127.0.0.1/a.csv"}]')
    assert sources[0].name == "a" and sources[0].resolved_format == "csv"


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ('[{"name": "a", "url": "ftp://x/a.csv"}]', "sources[0][url]"),
        ('[{"url": "http://127.0.0.1/a"}]', "sources[0][name]: Field required"),
        ('[{"name": "a", "url": "http://h/a", "colour": 1}]', "sources[0][colour]"),
        ('[{"name": "../x", "url": "http://h/a"}]', "sources[0][name]"),
        (
            '[{"name": "a", "url": "http://h/a", "schema": {"c": {"type": "blob"}}}]',
            "[schema][c][type]",
        ),
        ('{"name": "a"}', "Input should be a valid list"),
        ("[{]", "not valid JSON"),
        (
            '[{"name": "a", "url": "http://h/1"}, {"name": "a", "url": "http://h/2"}]',
            "sources[1].name 'a' is a duplicate",
        ),
    ],
)
def test_invalid_sources_name_the_bad_field(value, needle):
    with pytest.raises(SourcesError) as info:
        parse_sources(value)
    assert needle in str(info.value)
    assert "sources" in str(info.value)
