# The Prefect worker image, built by nix2container from the same uv.lock as Dockerfile.worker.
# Layers, bottom to top: the Python runtime; third-party packages (change with uv.lock only);
# the workspace packages and the venv; then ONE root filesystem path (users, CA certificates,
# /bin, /app, /tmp, entrypoint). One path on purpose: nix2container refuses a file provided
# twice with another mode or perms (two copyToRoot paths both holding /etc did exactly that).
{
  pkgs,
  nix2container,
  root,
  python,
  deps-venv,
  worker-venv,
  memberPaths,
  labels,
}:
let
  uid = 10001;
  mkRoot = import ./mk-root.nix { inherit (pkgs) runCommand; };

  # /bin: bash (also as sh, for the POSIX sh entrypoint) and coreutils, as one linked directory.
  binTools = pkgs.buildEnv {
    name = "airnub-worker-bin";
    paths = [
      pkgs.bashInteractive
      pkgs.coreutils
    ];
    pathsToLink = [ "/bin" ];
  };
  caBundle = "${pkgs.cacert}/etc/ssl/certs/ca-bundle.crt";

  rootfs = mkRoot "airnub-worker-root" (
    [
    {
      path = "etc/passwd";
      text = ''
        root:x:0:0:root:/root:/usr/sbin/nologin
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
        airnub:x:${toString uid}:${toString uid}:airnub:/home/airnub:/usr/sbin/nologin
      '';
    }
    {
      path = "etc/group";
      text = ''
        root:x:0:
        nogroup:x:65534:
        airnub:x:${toString uid}:
      '';
    }
    # Debian's and nixpkgs' names for the CA bundle, all the cacert file.
    {
      path = "etc/ssl/certs/ca-certificates.crt";
      link = caBundle;
    }
    {
      path = "etc/ssl/certs/ca-bundle.crt";
      link = caBundle;
    }
    {
      path = "etc/pki/tls/certs/ca-bundle.crt";
      link = caBundle;
    }
    {
      path = "bin";
      link = "${binTools}/bin";
    }
    {
      path = "usr/bin/env";
      link = "${pkgs.coreutils}/bin/env";
    }
    {
      path = "opt/venv";
      link = "${worker-venv}";
    }
    # The same file Dockerfile.worker copies.
    {
      path = "usr/local/bin/airnub-entrypoint";
      source = root + "/packages/deploy_tools/src/deploy_tools/image/entrypoint.sh";
      executable = true;
    }
    # deploy/*.yaml and *.yml only, as `airnub image build` puts them in the Docker context.
    {
      path = "app/deploy";
      tree = root + "/deploy";
      include = ".*\\.ya?ml";
    }
    # The [tool.airnub] table tells `airnub` in the image which projects and files exist.
    {
      path = "app/pyproject.toml";
      source = root + "/pyproject.toml";
    }
    # The SBOM of this venv as built, with the hashes uv.lock records: the command
    # Dockerfile.worker runs on its venv (deploy_tools/image/sbom.py), nothing committed.
    {
      path = "app/sbom.cdx.json";
      run = "${worker-venv}/bin/python -m deploy_tools.image.sbom --lock ${root + "/uv.lock"} --venv ${worker-venv} --output \"$dest\"";
    }
    {
      path = "app/data";
      dir = true;
    }
    {
      path = "home/airnub/.prefect";
      dir = true;
    }
    {
      path = "tmp";
      dir = true;
    }
  ]
  # Each member's pyproject.toml only (its project table), as `airnub image build` puts them in
  # the Docker context: `airnub` in the image finds the projects as in the checkout.
  ++ map (folder: {
    path = "app/${folder}/pyproject.toml";
    source = root + "/${folder}/pyproject.toml";
  }) memberPaths
  );

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
  worker = {
    inherit uid;
    gid = uid;
    uname = "airnub";
    gname = "airnub";
  };
in
nix2container.buildImage {
  name = "airnub-prefect-worker";
  config = import ./worker-image-config.nix { inherit labels; };
  layers = [
    pythonLayer
    depsLayer
    appLayer
  ];
  copyToRoot = [ rootfs ];
  # Regexes match the file's store path (nix2container, nix/tar.go). As in Dockerfile.worker:
  # /home/airnub and /app/data belong to the worker, everything else to root; /tmp is 1777.
  perms = [
    (
      worker
      // {
        path = rootfs;
        regex = "/home/airnub(/.*)?$";
        mode = "0755";
      }
    )
    (
      worker
      // {
        path = rootfs;
        regex = "/app/data$";
        mode = "0755";
      }
    )
    {
      path = rootfs;
      regex = "/tmp$";
      mode = "1777";
    }
  ];
}
