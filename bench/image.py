"""Worker image benchmark: size vs a naive image, and rebuild time after a one-line change.

Both images are built in this run, offline, on the same base and from the same hash-checked
wheelhouse:

- ours: `Dockerfile.worker` via `airnub image build` (multi-stage, runtime deps only);
- naive ("airnub-style"): one stage, `COPY . .`, the dev dependency group installed too, pip's
  defaults (bytecode, cache), root user — how the image looked before.

Then `flows_alpha/pipeline.py` gets one extra line in each temporary copy and both are rebuilt
(build cache warm); the time and the layers whose digests changed are printed.

    hatch run bench:image [--base-image airnub/base:bookworm]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from deploy_tools.image import layerdiff, wheelhouse
from deploy_tools.image.build import BuildOptions, build_image, source_date_epoch
from deploy_tools.image.verify import clean_copy, resolve

ROOT = Path(__file__).resolve().parents[1]
CHANGED_FILE = Path("packages/flows_alpha/src/flows_alpha/pipeline.py")

NAIVE_DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
WORKDIR /app
COPY . .
RUN --mount=type=bind,from=wheels,target=/wheels \\
    python3 -m venv /opt/venv \\
 && /opt/venv/bin/pip install --no-index --find-links /wheels/deps -r /wheels/requirements-dev.txt \\
 && /opt/venv/bin/pip install --no-index --no-deps /wheels/workspace/*.whl
ENV PATH=/opt/venv/bin:$PATH
CMD ["prefect", "worker", "start", "--pool", "airnub-docker"]
"""


def _sizes(tag: str, tmp: Path) -> tuple[int, int, list[str]]:
    """(compressed, uncompressed) bytes of the image's layers, and the layer digests."""
    archive = tmp / f"{tag.replace(':', '_').replace('/', '_')}.tar"
    subprocess.run(["docker", "save", "-o", str(archive), tag], check=True)
    image = layerdiff.read_image(archive)
    compressed = uncompressed = 0
    with tarfile.open(archive) as tar:
        for digest in image.layers:
            member = tar.getmember(f"blobs/sha256/{digest.split(':')[1]}")
            compressed += member.size
            with tarfile.open(fileobj=layerdiff.blob(tar, digest), mode="r:*") as layer:
                uncompressed += sum(m.size for m in layer if m.isfile())
    archive.unlink()
    return compressed, uncompressed, image.layers


def _naive_context(copy: Path, base: str, wheels: Path) -> None:
    """Wheels for runtime + dev dependencies and the workspace wheels, outside the context."""
    target = wheelhouse.probe_target(base)
    export = subprocess.run(
        ["uv", "export", "--frozen", "--all-extras", "--no-emit-workspace", "--hashes",
         "--no-header", "--no-annotate"],
        cwd=copy, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    reqs = wheelhouse.select(wheelhouse.parse_requirements(export), target)
    wheels.mkdir(parents=True)
    (wheels / "requirements-dev.txt").write_text("".join(r.line() + "\n" for r in reqs))
    wheelhouse.fetch(reqs, target, ROOT / ".image" / "wheelhouse", wheels / "deps")
    wheelhouse.build_workspace_wheels(copy, wheels / "workspace", source_date_epoch(copy))


def _naive_build(copy: Path, wheels: Path, base: str, tag: str) -> float:
    (copy / "Dockerfile.naive").write_text(NAIVE_DOCKERFILE)
    (copy / ".dockerignore").unlink(missing_ok=True)  # the naive layout had none
    start = time.monotonic()
    subprocess.run(
        ["docker", "buildx", "build", "--quiet", "--load", "--provenance=false", "--network", "none",
         "--file", str(copy / "Dockerfile.naive"), "--build-context", f"wheels={wheels}",
         "--build-arg", f"BASE_IMAGE={base}", "--tag", tag, str(copy)],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return time.monotonic() - start


def _ours_build(copy: Path, base: str, tag: str, ctx: Path) -> float:
    start = time.monotonic()
    build_image(BuildOptions(project=copy, tag=tag, base_image=base, context_dir=ctx, quiet=True,
                             wheel_cache=ROOT / ".image" / "wheelhouse"))  # fmt: skip
    return time.monotonic() - start


def _one_line_change(copy: Path) -> None:
    path = copy / CHANGED_FILE
    path.write_text(path.read_text() + "# bench: one-line change\n")


def main() -> None:
    """Build both images twice (before/after a one-line change) and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--base-image", default=os.environ.get("AIRNUB_BASE_IMAGE", "airnub/base:bookworm")
    )
    args = parser.parse_args()
    base = args.base_image
    os.environ["BUILDX_NO_DEFAULT_ATTESTATIONS"] = "1"
    tags = ["airnub-worker:bench", "airnub-worker:bench-changed", "airnub-naive:bench",
            "airnub-naive:bench-changed"]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="airnub-bench-") as tmp_s:
        tmp = Path(tmp_s)
        ours_copy, naive_copy = tmp / "ours" / "src", tmp / "naive" / "src"
        commit = resolve(ROOT, "HEAD")
        for copy in (ours_copy, naive_copy):
            copy.parent.mkdir()
            clean_copy(ROOT, commit, copy)

        print(f"base image: {base}")
        t_ours = _ours_build(ours_copy, base, tags[0], tmp / "ctx")
        _naive_context(naive_copy, base, tmp / "naive-wheels")
        t_naive = _naive_build(naive_copy, tmp / "naive-wheels", base, tags[2])
        ours_c, ours_u, ours_layers = _sizes(tags[0], tmp)
        naive_c, naive_u, _ = _sizes(tags[2], tmp)
        _, base_u, _ = _sizes(base, tmp)

        for copy in (ours_copy, naive_copy):
            _one_line_change(copy)
        shutil.rmtree(tmp / "naive-wheels")
        _naive_context(naive_copy, base, tmp / "naive-wheels")
        r_ours = _ours_build(ours_copy, base, tags[1], tmp / "ctx")
        r_naive = _naive_build(naive_copy, tmp / "naive-wheels", base, tags[3])
        _, _, changed_layers = _sizes(tags[1], tmp)
        _, _, naive_before = _sizes(tags[2], tmp)
        _, _, naive_after = _sizes(tags[3], tmp)

    mb = 1e6
    changed = [i for i in range(len(ours_layers)) if ours_layers[i] != changed_layers[i]]
    naive_changed = [i for i in range(len(naive_before)) if naive_before[i] != naive_after[i]]
    print(f"first build (cache warm for wheels): ours {t_ours:.1f} s, naive {t_naive:.1f} s")
    print(f"size uncompressed: ours {ours_u / mb:.0f} MB, naive {naive_u / mb:.0f} MB, "
          f"ratio {ours_u / naive_u:.3f}")  # fmt: skip
    print(
        f"  above the shared base ({base_u / mb:.0f} MB): ours {(ours_u - base_u) / mb:.0f} MB, "
        f"naive {(naive_u - base_u) / mb:.0f} MB, ratio {(ours_u - base_u) / (naive_u - base_u):.3f}"
    )
    print(f"size compressed (registry): ours {ours_c / mb:.0f} MB, naive {naive_c / mb:.0f} MB, "
          f"ratio {ours_c / naive_c:.3f}")  # fmt: skip
    print(f"rebuild after one line in {CHANGED_FILE}: ours {r_ours:.1f} s, naive {r_naive:.1f} s, "
          f"ratio {r_ours / r_naive:.2f}")  # fmt: skip
    print(
        f"layers changed: ours {changed} of {len(ours_layers)} (top = {len(ours_layers) - 1}), "
        f"naive {naive_changed} of {len(naive_before)} (top = {len(naive_before) - 1})"
    )
    subprocess.run(["docker", "image", "rm", "-f", *tags], capture_output=True)


if __name__ == "__main__":
    main()
