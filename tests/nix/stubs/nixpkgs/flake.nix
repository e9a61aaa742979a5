{
  description = "Offline test stand-in for nixpkgs: a few lib functions and recording fake packages";

  outputs =
    { self }:
    let
      lib = {
        genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
        # Same semantics as nixpkgs' lib.composeExtensions / composeManyExtensions.
        composeExtensions =
          f: g: final: prev:
          let
            fApplied = f final prev;
            prev' = prev // fApplied;
          in
          fApplied // g final prev';
        composeManyExtensions = builtins.foldl' lib.composeExtensions (_: _: { });
      };

      forSystem =
        system:
        let
          # A derivation that evaluates (drvPath, outPath) but fails if anyone builds it.
          fake =
            name: stub:
            derivation {
              inherit name system;
              builder = "/bin/sh";
              args = [ "-c" "echo 'stub derivation, not buildable' >&2; exit 1" ];
            }
            // {
              inherit stub;
            };
          pkgs = {
            inherit lib;
            callPackage = f: args: f args;
            python311 = fake "python3-3.11-stub" { } // {
              interpreter = "/stub/python3.11";
              version = "3.11";
            };
            hatch = fake "hatch-stub" { };
            uv = fake "uv-stub" { };
            docker-client = fake "docker-client-stub" { };
            skopeo = fake "skopeo-stub" { };
            bashInteractive = fake "bash-stub" { };
            coreutils = fake "coreutils-stub" { };
            cacert = fake "cacert-stub" { };
            buildEnv = args: fake args.name args;
            runCommand = name: env: script: fake name { inherit env script; };
            mkShell = args: fake "shell-stub" args;
          };
        in
        pkgs;
    in
    {
      inherit lib;
      legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] forSystem;
    };
}
