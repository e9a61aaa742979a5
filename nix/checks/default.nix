# checks.<system> (`nix flake check`; the first build needs network access to the caches):
# - worker-venv-imports: the worker venv imports the three workspace packages and runs the CLI;
# - worker-image: the image builds;
# - dev-shell: the dev shell builds, with its editable venv of every member (dev group included).
{
  pkgs,
  packages,
  devShells,
}:
{
  worker-venv-imports = pkgs.runCommand "airnub-worker-venv-imports" { } ''
    export HOME=$TMPDIR DO_NOT_TRACK=1
    ${packages.worker-venv}/bin/python -c 'import pipeline_core, flows_alpha, deploy_tools, prefect_aws'
    ${packages.worker-venv}/bin/airnub --help >/dev/null
    ${packages.worker-venv}/bin/prefect --version
    touch $out
  '';
  inherit (packages) worker-image;
  dev-shell = devShells.default;
}
