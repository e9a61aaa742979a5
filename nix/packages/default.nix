# packages.<system>: the worker venv (from uv.lock, no dev group) and the worker image.
{
  pkgs,
  pythonSet,
  workspace,
  nix2container,
  root,
  revision,
}:
let
  worker-venv = pythonSet.mkVirtualEnv "airnub-worker-venv" workspace.workerMembers;
  pyproject = builtins.fromTOML (builtins.readFile (root + "/pyproject.toml"));
in
{
  inherit worker-venv;

  worker-image = import ./worker-image.nix {
    inherit pkgs nix2container root worker-venv;
    inherit (pythonSet) python;
    # Third-party dependencies only: their layer changes only when uv.lock changes.
    deps-venv = pythonSet.mkVirtualEnv "airnub-worker-deps" workspace.thirdPartyDeps;
    # The values `airnub image build` gives Dockerfile.worker's VERSION, REVISION and SOURCE:
    # the root project's version, the commit, [tool.airnub] image_source (or its default).
    labels = {
      inherit revision;
      version = pyproject.project.version or "0.0.0";
      source =
        pyproject.tool.airnub.image_source or "https://example.invalid/airnub-prefect-starter";
    };
  };

  default = worker-venv;
}
