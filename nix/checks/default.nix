# checks.<system> (`nix flake check`, needs network for the first build): the venv imports the
# three workspace packages and runs the CLI; the image and the dev-shell venv build.
{ pkgs, packages }:
{
  worker-venv-imports = pkgs.runCommand "airnub-worker-venv-imports" { } ''
    export HOME=$TMPDIR DO_NOT_TRACK=1
    ${packages.worker-venv}/bin/python -c 'import pipeline_core, flows_alpha, deploy_tools, prefect_aws'
    ${packages.worker-venv}/bin/airnub --help >/dev/null
    ${packages.worker-venv}/bin/prefect --version
    touch $out
  '';
  inherit (packages) worker-image;
}
