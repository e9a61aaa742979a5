# packages.<system>: the worker venv (from uv.lock, no dev group) and the worker image.
{
  pkgs,
  pythonSet,
  workspace,
  nix2container,
  root,
  labels,
}:
let
  worker-venv = pythonSet.mkVirtualEnv "airnub-worker-venv" workspace.workerMembers;
in
{
  inherit worker-venv;

  worker-image = import ./worker-image.nix {
    inherit pkgs nix2container root worker-venv;
    inherit (pythonSet) python;
    inherit (workspace) memberPaths;
    # Third-party dependencies only: their layer changes only when uv.lock changes.
    deps-venv = pythonSet.mkVirtualEnv "airnub-worker-deps" workspace.thirdPartyDeps;
    inherit labels;
  };

  default = worker-venv;
}
