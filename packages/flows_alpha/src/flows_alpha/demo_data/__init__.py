"""The Project Alpha demo dataset: a few small CSV/JSON files, some rows deliberately invalid.

The local stack serves this folder over HTTP on 127.0.0.1 and points the `alpha_sources`
variable at it (see `demo_sources`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# name -> (file, format, schema). Schemas use pipeline_core.sources.ColumnSpec fields.
_DEMO: dict[str, tuple[str, str, dict[str, dict[str, Any]]]] = {
    "cities": (
        "cities.csv",
        "csv",
        {
            "name": {"type": "str"},
            "country": {"type": "str", "pattern": "^[A-Z]{2}$"},
            "population": {"type": "int", "min": 0},
            "founded": {"type": "date"},
            "coastal": {"type": "bool"},
        },
    ),
    "stations": (
        "stations.json",
        "json",
        {
            "station": {"type": "str", "pattern": "^[A-Z]{3}-[0-9]{2}$"},
            "date": {"type": "date"},
            "temp_c": {"type": "float", "min": -60, "max": 60},
            "precip_mm": {"type": "float", "min": 0},
        },
    ),
    "readings": (
        "readings.csv",
        "csv",
        {
            "sensor_id": {"type": "str"},
            "taken_at": {"type": "datetime"},
            "value": {"type": "float", "min": 0},
            "unit": {"type": "str", "pattern": "^kWh$"},
        },
    ),
}


def demo_data_dir() -> Path:
    """The folder holding the demo files."""
    return Path(__file__).parent


def demo_sources(base_url: str) -> list[dict[str, Any]]:
    """The default `alpha_sources` value for the demo files served at `base_url`.

    Example:
        >>> demo_sources("http://127.0.0.1:8765")[0]["url"]
        'http://127.0.0.1:8765/cities.csv'
    """
    base = base_url.rstrip("/")
    return [
        {"name": name, "url": f"{base}/{file}", "format": fmt, "schema": schema}
        for name, (file, fmt, schema) in _DEMO.items()
    ]
