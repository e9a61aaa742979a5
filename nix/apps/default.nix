# apps.<system>: copy the worker image out of the Nix store with nix2container's skopeo.
#   nix run .#copy-to-docker                      -> Docker daemon, airnub-prefect-worker:<hash>
#   nix run .#copy-to-registry -- docker://HOST/airnub-prefect-worker:TAG [skopeo options]
{ worker-image }:
{
  copy-to-docker = {
    type = "app";
    program = "${worker-image.copyToDockerDaemon}/bin/copy-to-docker-daemon";
  };
  copy-to-registry = {
    type = "app";
    program = "${worker-image.copyTo}/bin/copy-to";
  };
}
