{
  description = "Offline test stand-in for nix2container: records its arguments, enforces its duplicate-path rule";

  outputs =
    { self }:
    let
      quote = s: "\"" + builtins.replaceStrings [ "\\" "\"" ] [ "\\\\" "\\\"" ] s + "\"";
      # Go's %#v of a []types.Perm, as nix2container prints it.
      goPerms =
        ps:
        if ps == [ ] then
          "[]types.Perm(nil)"
        else
          "[]types.Perm{"
          + builtins.concatStringsSep ", " (
            map (
              p:
              "types.Perm{Regex:${quote p.Regex}, Mode:${quote p.Mode}, Uid:${toString p.Uid}, "
              + "Gid:${toString p.Gid}, Uname:${quote p.Uname}, Gname:${quote p.Gname}}"
            ) ps
          )
          + "}";

      # The files one layer's tar gets from its copyToRoot paths, checked as nix2container's
      # addFileToGraph (nix/graph.go) does while it builds that tar's graph: a path already in
      # the graph may be added again only with the same mode, the same size (regular files)
      # and the same perms list; otherwise the build fails with these messages. Each layer is
      # its own tar and graph, so two layers are never compared. The files of a store path come
      # from its stub tree (tests/nix/stubs/nixpkgs: buildEnv, mkRoot's runCommand, packages).
      # Walk order: copyToRoot order, then path order (nix2container: store path popularity,
      # then filepath.Walk's); it only decides which side an error names first.
      layerGraph =
        what:
        {
          copyToRoot ? null,
          perms ? [ ],
          ...
        }:
        let
          roots =
            if copyToRoot == null then
              [ ]
            else if builtins.isList copyToRoot then
              copyToRoot
            else
              [ copyToRoot ];
          treeOf =
            p:
            p.stub.tree or (throw (
              "stub nix2container (${what}): the stubs do not know the files of ${p.name}; "
              + "make it with mkRoot (nix/packages/mk-root.nix), buildEnv or a stub package with a tree"
            ));
          # getPaths (nix/layers.go): the perms whose path is this store path, in order.
          permsOf =
            p:
            map (x: {
              Regex = x.regex or "";
              Mode = x.mode or "";
              Uid = x.uid or 0;
              Gid = x.gid or 0;
              Uname = x.uname or "";
              Gname = x.gname or "";
            }) (builtins.filter (x: "${x.path}" == "${p}") perms);
          files = builtins.concatMap (
            p:
            let
              t = treeOf p;
              ps = permsOf p;
            in
            map (rel: {
              dst = "/${rel}";
              src = "${p}/${rel}";
              node = t.${rel};
              perms = ps;
            }) (builtins.attrNames t)
          ) roots;
          add =
            graph: f:
            let
              cur = graph.${f.dst};
            in
            if !(graph ? ${f.dst}) then
              graph // { ${f.dst} = f; }
            else if cur.node.mode != f.node.mode then
              throw "the file '${f.dst}' already exists in the graph with mode '${cur.node.mode}' from '${cur.src}' while it is added again with mode '${f.node.mode}' by '${f.src}'"
            else if builtins.substring 0 1 f.node.mode == "-" && cur.node.size != f.node.size then
              throw "the file '${f.dst}' already exists in the graph with size '${toString cur.node.size}' from '${cur.src}' while it is added again with size '${toString f.node.size}' by '${f.src}'"
            else if cur.perms != f.perms then
              throw "the file '${f.dst}' already exists in the tar with perms ${goPerms cur.perms} but is overridden with perms ${goPerms f.perms}"
            else
              graph // { ${f.dst} = f; };
        in
        builtins.mapAttrs (_: f: {
          inherit (f) src;
          inherit (f.node) mode;
          size = f.node.size or null;
          target = f.node.target or null;
        }) (builtins.foldl' add { } files);

      forSystem =
        system:
        let
          fake =
            name: stub: graph:
            derivation {
              inherit name system;
              builder = "/bin/sh";
              args = [ "-c" "exit 1" ];
              # Distinct store paths for distinct arguments.
              stubArgs = builtins.toJSON stub;
              # Evaluating the derivation (drvPath, `nix flake check`) runs the graph rule.
              layerFiles = builtins.toJSON graph;
            }
            // {
              stub = stub // {
                layerFiles = graph;
              };
            };
        in
        {
          nix2container = {
            buildLayer = args: fake "layer.json" args (layerGraph "buildLayer" args);
            buildImage =
              args:
              # buildImage puts copyToRoot and perms in one more layer, on top of `layers`.
              fake "image-${args.name}.json" args (layerGraph "buildImage ${args.name}" args)
              // {
                imageName = args.name;
                copyToDockerDaemon = fake "copy-to-docker-daemon" { } { };
                copyToRegistry = fake "copy-to-registry" { } { };
                copyTo = fake "copy-to" { } { };
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
