{
  description = "airnub-prefect-starter: a dev shell and a Prefect worker image built from uv.lock";

  # One lock node per repository: every input follows our nixpkgs / pyproject-nix / uv2nix.
  # flake.lock is written from ../shared pins (see docs/nix.md); `original` must match these URLs.
  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

    pyproject-nix = {
      url = "github:pyproject-nix/pyproject.nix";
      inputs.nixpkgs.follows = "nixpkgs";
    };

    uv2nix = {
      url = "github:pyproject-nix/uv2nix";
      inputs.pyproject-nix.follows = "pyproject-nix";
      inputs.nixpkgs.follows = "nixpkgs";
    };

    pyproject-build-systems = {
      url = "github:pyproject-nix/build-system-pkgs";
      inputs.pyproject-nix.follows = "pyproject-nix";
      inputs.uv2nix.follows = "uv2nix";
      inputs.nixpkgs.follows = "nixpkgs";
    };

    nix2container = {
      url = "github:nlewo/nix2container";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs =
    inputs@{ self, nixpkgs, ... }:
    let
      inherit (nixpkgs) lib;
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = lib.genAttrs systems;

      # The uv workspace and what the worker installs from it (system independent).
      workspace = import ./nix/workspace.nix {
        inherit (inputs) uv2nix;
        root = ./.;
      };

      # Everything built for one system; each output below picks its part.
      perSystem = forAllSystems (
        system:
        import ./nix/per-system.nix {
          inherit inputs lib system workspace;
          root = ./.;
        }
      );
      pick = name: forAllSystems (system: perSystem.${system}.${name});
    in
    {
      packages = pick "packages";
      devShells = pick "devShells";
      apps = pick "apps";
      checks = pick "checks";
    };
}
