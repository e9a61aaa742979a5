# The worker image's OCI config. Mirrors Dockerfile.worker (entrypoint, command, user, working
# directory, environment, the four org.opencontainers.image labels); tests/nix/test_flake_wiring.py
# compares the two. `labels`: { version, revision, source } (nix/packages/default.nix).
{ labels }:
{
  Entrypoint = [ "/usr/local/bin/airnub-entrypoint" ];
  Cmd = [
    "--pool"
    "airnub-docker"
  ];
  User = "10001:10001";
  WorkingDir = "/app";
  Env = [
    # /opt/venv is a link to the venv's store path; /bin and /usr/bin hold bash and coreutils.
    "PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    "VIRTUAL_ENV=/opt/venv"
    "HOME=/home/airnub"
    "PREFECT_HOME=/home/airnub/.prefect"
    "PYTHONUNBUFFERED=1"
    "PYTHONDONTWRITEBYTECODE=1"
    "LANG=C.UTF-8"
  ];
  Labels = {
    "org.opencontainers.image.title" = "airnub-prefect-worker";
    "org.opencontainers.image.source" = labels.source;
    "org.opencontainers.image.revision" = labels.revision;
    "org.opencontainers.image.version" = labels.version;
  };
}
