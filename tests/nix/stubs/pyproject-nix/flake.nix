{
  description = "Offline test stand-in for pyproject.nix: a package scope whose mkVirtualEnv records its spec";

  outputs =
    { self }:
    let
      extends =
        g: f: final:
        let
          prev = f final;
        in
        prev // g final prev;

      # Like nixpkgs' makeScope: a fixed point that can be extended with overrideScope.
      makeScope =
        f:
        let
          scope = f scope // {
            overrideScope = g: makeScope (extends g f);
          };
        in
        scope;

      base =
        python: final: {
          inherit python;
          resolveBuildSystem = spec: [ (builtins.attrNames spec) ];
          # Records the spec and, for every name in it, what the scope holds under that name;
          # a name the scope does not hold fails evaluation, as in pyproject.nix.
          mkVirtualEnv =
            name: spec:
            derivation {
              inherit name;
              inherit (python) system;
              builder = "/bin/sh";
              args = [ "-c" "exit 1" ];
            }
            // {
              stub = {
                inherit name spec;
                # Which build-system-pkgs overlay the scope was given (null: none).
                buildSystems = final.stubBuildSystems or null;
                packages = builtins.mapAttrs (n: _: final.${n}.stub) spec;
              };
            };
        };
    in
    {
      build.packages = { python, ... }: makeScope (base python);
    };
}
