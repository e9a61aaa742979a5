# The uv workspace (root pyproject.toml + uv.lock) as uv2nix loads it, and what the worker
# installs from it. System independent.
{ uv2nix, root }:
let
  workspace = uv2nix.lib.workspace.loadWorkspace { workspaceRoot = root; };

  # The worker venv: the three workspace distributions (pipeline-core with its `aws` extra),
  # no dev dependency group. Same set as Dockerfile.worker's `uv export --no-dev`.
  workerMembers = {
    airnub-pipeline-core = [ "aws" ];
    airnub-flows-alpha = [ ];
    airnub-deploy-tools = [ ];
  };

  # The members' direct third-party dependencies, read from uv.lock. They give the image a
  # layer that changes only when uv.lock does. Only a layering choice: whatever is missed here
  # (a marker-guarded dependency) still lands in the image through the full venv's closure.
  lock = builtins.fromTOML (builtins.readFile (root + "/uv.lock"));
  lockPackages = builtins.listToAttrs (
    map (p: {
      inherit (p) name;
      value = p;
    }) lock.package
  );
  directDeps =
    name: extras:
    let
      p = lockPackages.${name};
    in
    (p.dependencies or [ ]) ++ builtins.concatMap (e: p.optional-dependencies.${e} or [ ]) extras;
  thirdPartyDeps = builtins.zipAttrsWith (_: builtins.concatLists) (
    map (d: { ${d.name} = d.extra or [ ]; }) (
      builtins.filter (d: !(workerMembers ? ${d.name}) && !(d ? marker)) (
        builtins.concatLists (builtins.attrValues (builtins.mapAttrs directDeps workerMembers))
      )
    )
  );
in
{
  inherit workspace workerMembers thirdPartyDeps;

  # Locked wheels where available; sdists only where the lock has no wheel.
  overlay = workspace.mkPyprojectOverlay { sourcePreference = "wheel"; };

  # Dev shell: workspace members installed editable from the checkout ($REPO_ROOT at run time).
  editableOverlay = workspace.mkEditablePyprojectOverlay { root = "$REPO_ROOT"; };
}
