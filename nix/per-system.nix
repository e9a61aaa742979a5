# All outputs for one system: packages, devShells, apps and checks.
{
  inputs,
  lib,
  system,
  workspace,
  root,
}:
let
  pkgs = inputs.nixpkgs.legacyPackages.${system};
  nix2container = inputs.nix2container.packages.${system}.nix2container;

  # Python 3.11, as in Dockerfile.worker's base image.
  python = pkgs.python311;

  pythonSet =
    (pkgs.callPackage inputs.pyproject-nix.build.packages { inherit python; }).overrideScope
      (
        lib.composeManyExtensions [
          # Build systems from wheels, as uv2nix's templates do (`default` is the sdist set).
          inputs.pyproject-build-systems.overlays.wheel
          workspace.overlay
        ]
      );

  packages = import ./packages {
    inherit pkgs pythonSet workspace nix2container root;
    labels = import ./image-labels.nix {
      inherit (inputs) self;
      inherit root;
    };
  };
  devShells = import ./devShells {
    inherit pkgs lib pythonSet workspace;
  };
in
{
  inherit packages devShells;
  apps = import ./apps { inherit (packages) worker-image; };
  checks = import ./checks { inherit pkgs packages devShells workspace; };
}
