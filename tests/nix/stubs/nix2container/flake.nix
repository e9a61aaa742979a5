{
  description = "Offline test stand-in for nix2container: buildImage/buildLayer record their arguments";

  outputs =
    { self }:
    let
      forSystem =
        system:
        let
          fake =
            name: stub:
            derivation {
              inherit name system;
              builder = "/bin/sh";
              args = [ "-c" "exit 1" ];
              # Distinct store paths for distinct arguments.
              stubArgs = builtins.toJSON stub;
            }
            // {
              inherit stub;
            };
        in
        {
          nix2container = {
            buildLayer = args: fake "layer.json" args;
            buildImage =
              args:
              fake "image-${args.name}.json" args
              // {
                imageName = args.name;
                copyToDockerDaemon = fake "copy-to-docker-daemon" { };
                copyToRegistry = fake "copy-to-registry" { };
                copyTo = fake "copy-to" { };
              };
          };
        };
    in
    {
      packages = {
        x86_64-linux = forSystem "x86_64-linux";
        aarch64-linux = forSystem "aarch64-linux";
      };
    };
}
