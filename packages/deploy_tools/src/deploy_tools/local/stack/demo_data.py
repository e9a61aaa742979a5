"""The demo-data server: each project's `demo_data` package folder under `/<project>/`.

The same server in both modes: a local process (`ProcessStack`) and the `demo-data` service of
`deploy/compose.yaml`, where the packages are the ones installed in the image::

    python -m deploy_tools.local.stack.demo_data --bind 127.0.0.1 --port 8765

It reads the projects from the settings of the current folder (or AIRNUB_PROJECT_DIR), serves
files only (no listing outside a project's folder, no path out of it) and logs one line a request.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from deploy_tools.local.stack.interface import StackError


def demo_data_folder(module: str) -> Path:
    """The folder of the importable package `module` (a project's demo data).

    Raises:
        StackError: it does not import or is not a package folder.
    """
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise StackError(f"demo_data {module!r} does not import: {exc}") from exc
    if mod.__file__ is None:
        raise StackError(f"demo_data {module!r} is not a package with a folder")
    return Path(mod.__file__).parent


class DemoDataHandler(SimpleHTTPRequestHandler):
    """`/<project>/<file>` → that file of the project's folder; anything else is 404."""

    def __init__(self, *args: object, folders: dict[str, Path], **kwargs: object) -> None:
        self.folders = folders
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def translate_path(self, path: str) -> str:
        parts = [p for p in unquote(urlsplit(path).path).split("/") if p]
        if not parts:
            return str(Path("/nonexistent"))  # `/` answers 404 from list_directory below
        folder = self.folders.get(parts[0])
        rest = parts[1:]
        if folder is None or any(p in (".", "..") or "\\" in p for p in rest):
            return str(Path("/nonexistent"))
        return str(folder.joinpath(*rest))

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/":  # the health check: which projects are served
            body = "".join(f"{name}/\n" for name in sorted(self.folders)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()


def project_folders() -> dict[str, Path]:
    """Each project's demo-data folder, by project name (projects without demo data left out).

    Raises:
        StackError: a `demo_data` module does not import.
    """
    from deploy_tools.settings import load_settings

    settings = load_settings()
    return {p.name: demo_data_folder(p.demo_data) for p in settings.projects if p.demo_data}


def serve(bind: str, port: int, folders: dict[str, Path]) -> None:
    """Serve `folders` on `bind:port` until interrupted."""
    handler = partial(DemoDataHandler, folders=folders)
    with ThreadingHTTPServer((bind, port), handler) as server:
        print(f"serving {', '.join(sorted(folders)) or 'no project'} on {bind}:{port}", flush=True)
        server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m deploy_tools.local.stack.demo_data [--bind H] [--port N]``."""
    parser = argparse.ArgumentParser(description="Serve every project's demo data.")
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        serve(args.bind, args.port, project_folders())


if __name__ == "__main__":
    main()
