# The uv workspace (root pyproject.toml + uv.lock) as uv2nix loads it, and what the worker
# installs from it. System independent.
{ uv2nix, root }:
let
  workspace = uv2nix.lib.workspace.loadWorkspace { workspaceRoot = root; };

  lock = builtins.fromTOML (builtins.readFile (root + "/uv.lock"));

  # The worker venv: every packaged workspace member of uv.lock (`editable` source: what the
  # root pyproject's `[tool.uv.workspace] members` globs find; a virtual member has no
  # package), each with the extras the workspace root asks of it (e.g. `[aws]`); no dev group.
  # Nothing is named here: `uv lock` after adding a member under packages/ adds it. The same
  # set as Dockerfile.worker (every wheel of `uv build --all-packages`).
  isRoot = p: (p.source.editable or p.source.virtual or null) == ".";
  rootPackage = builtins.head (builtins.filter isRoot lock.package ++ [ { } ]);
  rootExtras =
    name:
    builtins.concatMap (d: if d.name == name then d.extra or [ ] else [ ]) (
      rootPackage.dependencies or [ ]
    );
  unique = builtins.foldl' (acc: x: if builtins.elem x acc then acc else acc ++ [ x ]) [ ];
  memberPackages = builtins.filter (p: p.source ? editable && !(isRoot p)) lock.package;
  workerMembers = builtins.listToAttrs (
    map (p: {
      inherit (p) name;
      value = unique (rootExtras p.name);
    }) memberPackages
  );

  # The members' direct third-party dependencies, read from uv.lock. They give the image a
  # layer that changes only when uv.lock does. Only a layering choice: whatever is missed here
  # (a marker-guarded dependency) still lands in the image through the full venv's closure.
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
  # Each member's folder (uv.lock's `editable` path): its pyproject.toml goes into the image
  # at /app/<folder>/pyproject.toml, where a project says who it is ([tool.airnub.project]).
  memberPaths = map (p: p.source.editable) memberPackages;
in
{
  inherit workspace workerMembers thirdPartyDeps memberPaths;

  # Locked wheels where available; sdists only where the lock has no wheel.
  overlay = workspace.mkPyprojectOverlay { sourcePreference = "wheel"; };

  # Dev shell: workspace members installed editable from the checkout ($REPO_ROOT at run time).
  editableOverlay = workspace.mkEditablePyprojectOverlay { root = "$REPO_ROOT"; };
}
