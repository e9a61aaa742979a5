# The Prefect worker image, built by nix2container from the same uv.lock as Dockerfile.worker.
# Layers, bottom to top: the Python runtime; third-party packages (change with uv.lock only);
# the workspace packages and the venv; then a small root filesystem (users, /app, entrypoint).
{
  pkgs,
  nix2container,
  root,
  python,
  deps-venv,
  worker-venv,
}:
let
  uid = 10001;

  entrypoint = builtins.path {
    name = "airnub-entrypoint";
    path = root + "/packages/deploy_tools/src/deploy_tools/image/entrypoint.sh";
  };
  # deploy/ (prefect.yaml files) is copied to /app/deploy as in Dockerfile.worker.
  deployFiles =
    if builtins.pathExists (root + "/deploy") then
      builtins.path {
        name = "airnub-deploy-files";
        path = root + "/deploy";
      }
    else
      null;

  # /bin/sh for the entrypoint (a POSIX sh script, the same file as in Dockerfile.worker),
  # coreutils, and CA certificates under /etc/ssl.
  baseTools = pkgs.buildEnv {
    name = "airnub-worker-base-tools";
    paths = [
      pkgs.bashInteractive
      pkgs.coreutils
      pkgs.cacert
    ];
    pathsToLink = [
      "/bin"
      "/etc"
    ];
  };

  rootfs = pkgs.runCommand "airnub-worker-rootfs" { } ''
    mkdir -p $out/etc $out/home/airnub/.prefect $out/app $out/tmp $out/opt \
      $out/usr/local/bin $out/usr/bin
    cat >$out/etc/passwd <<'PASSWD'
    root:x:0:0:root:/root:/usr/sbin/nologin
    nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
    airnub:x:${toString uid}:${toString uid}:airnub:/home/airnub:/usr/sbin/nologin
    PASSWD
    cat >$out/etc/group <<'GROUP'
    root:x:0:
    nogroup:x:65534:
    airnub:x:${toString uid}:
    GROUP
    install -m 0755 ${entrypoint} $out/usr/local/bin/airnub-entrypoint
    ln -s ${worker-venv} $out/opt/venv
    ln -s ${pkgs.coreutils}/bin/env $out/usr/bin/env
    ${
      if deployFiles == null then
        "mkdir -p $out/app/deploy"
      else
        "cp -r --no-preserve=mode ${deployFiles} $out/app/deploy"
    }
  '';

  pythonLayer = nix2container.buildLayer { deps = [ python ]; };
  depsLayer = nix2container.buildLayer {
    deps = [ deps-venv ];
    layers = [ pythonLayer ];
  };
  appLayer = nix2container.buildLayer {
    deps = [ worker-venv ];
    layers = [
      pythonLayer
      depsLayer
    ];
  };
in
nix2container.buildImage {
  name = "airnub-prefect-worker";
  config = import ./worker-image-config.nix;
  layers = [
    pythonLayer
    depsLayer
    appLayer
  ];
  copyToRoot = [
    baseTools
    rootfs
  ];
  perms = [
    {
      path = rootfs;
      regex = "/home/airnub.*";
      mode = "0755";
      inherit uid;
      gid = uid;
      uname = "airnub";
      gname = "airnub";
    }
    {
      path = rootfs;
      regex = "/tmp";
      mode = "1777";
    }
  ];
}
