# devShells.<system>.default: Python 3.11 with every workspace package editable (dev group
# included), hatch, uv, the Docker client and skopeo. uv uses this Python and never syncs.
{
  pkgs,
  lib,
  pythonSet,
  workspace,
}:
let
  # hatchling builds editables through the `editables` package.
  hatchlingEditables =
    final: prev:
    builtins.mapAttrs (
      name: _:
      prev.${name}.overrideAttrs (old: {
        nativeBuildInputs = old.nativeBuildInputs ++ final.resolveBuildSystem { editables = [ ]; };
      })
    ) workspace.workerMembers;

  editableSet = pythonSet.overrideScope (
    lib.composeManyExtensions [
      workspace.editableOverlay
      hatchlingEditables
    ]
  );
  venv = editableSet.mkVirtualEnv "airnub-dev-venv" workspace.workspace.deps.all;
in
{
  default = pkgs.mkShell {
    packages = [
      venv
      pkgs.hatch
      pkgs.uv
      pkgs.docker-client
      pkgs.skopeo
    ];
    env = {
      UV_NO_SYNC = "1";
      UV_PYTHON = editableSet.python.interpreter;
      UV_PYTHON_DOWNLOADS = "never";
      DO_NOT_TRACK = "1";
      PREFECT_SERVER_ANALYTICS_ENABLED = "false";
    };
    shellHook = ''
      unset PYTHONPATH
      export REPO_ROOT=$(git rev-parse --show-toplevel)
    '';
  };
}
