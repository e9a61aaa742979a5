# checks.<system> (`nix flake check`; the first build needs network access to the caches):
# - worker-venv-imports: every workspace member of the worker venv (workspace.workerMembers,
#   read from uv.lock: nothing named here) imports its top-level modules, the extras the root
#   asks for are installed, and the CLI runs;
# - worker-image: the image builds;
# - dev-shell: the dev shell builds, with its editable venv of every member (dev group included).
{
  pkgs,
  packages,
  devShells,
  workspace,
}:
let
  # `name` or `name[extra,...]`: the arguments of `python -m deploy_tools.image.members check`.
  spec =
    name: extras:
    if extras == [ ] then name else "${name}[${builtins.concatStringsSep "," extras}]";
  # Names are PEP 503 normalised ([a-z0-9-]) and extras too: safe unquoted in single quotes.
  members = builtins.concatStringsSep " " (
    map (s: "'${s}'") (builtins.attrValues (builtins.mapAttrs spec workspace.workerMembers))
  );
in
{
  worker-venv-imports = pkgs.runCommand "airnub-worker-venv-imports" { } ''
    export HOME=$TMPDIR DO_NOT_TRACK=1
    ${packages.worker-venv}/bin/python -m deploy_tools.image.members check ${members}
    ${packages.worker-venv}/bin/airnub --help >/dev/null
    ${packages.worker-venv}/bin/prefect --version
    touch $out
  '';
  inherit (packages) worker-image;
  dev-shell = devShells.default;
}
