{
  description = "Offline test stand-in for uv2nix: loadWorkspace records the workspace it was given";

  outputs =
    { self }:
    {
      lib.workspace.loadWorkspace =
        { workspaceRoot }:
        let
          pyproject = builtins.fromTOML (builtins.readFile (workspaceRoot + "/pyproject.toml"));
          lock = builtins.fromTOML (builtins.readFile (workspaceRoot + "/uv.lock"));
          isMember = p: p.source ? editable || p.source ? virtual;
          members = builtins.filter isMember lock.package;
          # What the tests compare with the checkout.
          workspaceInfo = {
            uvLockSha256 = builtins.hashFile "sha256" (workspaceRoot + "/uv.lock");
            workspaceMembersGlob = pyproject.tool.uv.workspace.members;
            lockMembers = map (p: p.name) members;
          };
          fakePackage =
            system: p: extra:
            let
              pkg =
                derivation {
                  inherit (p) name;
                  inherit system;
                  builder = "/bin/sh";
                  args = [ "-c" "exit 1" ];
                }
                // {
                  nativeBuildInputs = [ ];
                  stub = {
                    inherit (p) name version;
                    source = p.source;
                  } // extra;
                  overrideAttrs = f: pkg // f pkg // { stub = pkg.stub // { overridden = f pkg; }; };
                };
            in
            pkg;
        in
        {
          inherit workspaceInfo;
          mkPyprojectOverlay =
            { sourcePreference }:
            final: _prev:
            builtins.listToAttrs (
              map (p: {
                inherit (p) name;
                value = fakePackage final.python.system p {
                  inherit sourcePreference workspaceInfo;
                  editable = false;
                };
              }) lock.package
            );
          mkEditablePyprojectOverlay =
            { root }:
            final: prev:
            builtins.listToAttrs (
              map (p: {
                inherit (p) name;
                value = fakePackage final.python.system p {
                  editable = true;
                  editableRoot = root;
                };
              }) members
            );
          deps.all = builtins.listToAttrs (
            map (p: {
              inherit (p) name;
              value = builtins.attrNames (p.optional-dependencies or { });
            }) members
          );
        };
    };
}
