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

      # What a store path holds, as nix2container's `filepath.Walk` of it would see it:
      # { "<path relative to the store path>" = { mode = "<Go os.FileMode string>";
      #   size = <bytes, regular files>; target = "<symlink target>"; }; }.
      # Modes are those of the Nix store: directories 0555, files 0444 or 0555, links 0777.
      tree = rec {
        dir = { mode = "dr-xr-xr-x"; };
        file = size: executable: {
          mode = if executable then "-r-xr-xr-x" else "-r--r--r--";
          inherit size;
        };
        link = target: {
          mode = "Lrwxrwxrwx";
          inherit target;
        };
        isDir = node: builtins.substring 0 1 node.mode == "d";

        # "a/b/c" -> [ "a" "a/b" ]
        ancestors =
          path:
          let
            parts = builtins.filter builtins.isString (builtins.split "/" path);
            n = builtins.length parts;
            prefix = i: builtins.concatStringsSep "/" (builtins.genList (j: builtins.elemAt parts j) i);
          in
          builtins.genList (i: prefix (i + 1)) (n - 1);
        withParents =
          path: node:
          builtins.listToAttrs (map (a: { name = a; value = dir; }) (ancestors path))
          // { ${path} = node; };

        # A directory (a Nix path) read with readDir, under `prefix`: its folders and the files
        # whose name matches `include`, as mkRoot's filtered copy.
        ofDirectory =
          prefix: src: include:
          builtins.foldl' (
            acc: name:
            let
              type = (builtins.readDir src).${name};
              path = "${prefix}/${name}";
              child = src + "/${name}";
            in
            acc
            // (
              if type == "directory" then
                { ${path} = dir; } // ofDirectory path child include
              else if builtins.match include name == null then
                { }
              else if type == "regular" then
                # cp --no-preserve=mode drops the execute bit.
                { ${path} = file (builtins.stringLength (builtins.readFile child)) false; }
              else
                { ${path} = link "?"; }
            )
          ) { } (builtins.attrNames (builtins.readDir src));

        # The tree of a mkRoot-style runCommand, from its `passthru.entries` (nix/packages/mk-root.nix).
        ofEntries =
          builtins.foldl' (
            acc: e:
            acc
            // (
              if e ? dir then
                withParents e.path dir
              else if e ? text then
                withParents e.path (file (builtins.stringLength e.text) false)
              else if e ? source then
                withParents e.path (
                  file (builtins.stringLength (builtins.readFile e.source)) (e.executable or false)
                )
              else if e ? tree then
                withParents e.path dir // ofDirectory e.path e.tree (e.include or ".*")
              else if e ? link then
                withParents e.path (link e.link)
              else if e ? run then
                withParents e.path (file 0 false) # written at build time: its size is unknown here
              else
                throw "stub runCommand: entry ${e.path} has none of dir, text, source, tree, link, run"
            )
          ) { };

        # nixpkgs' buildEnv (builder.pl): a directory or file that only one package provides is
        # a link to it; a directory several packages provide is a real directory, merged below;
        # anything else provided twice is a collision. pathsToLink: "/" or top-level folders.
        ofBuildEnv =
          {
            name,
            paths,
            pathsToLink ? [ "/" ],
            ...
          }:
          let
            treeOf =
              p:
              p.stub.tree
                or (throw "stub buildEnv ${name}: the stubs do not know the files of ${p.name}");
            providers = map (p: {
              out = "${p}";
              t = treeOf p;
            }) paths;
            childNames =
              rel: t:
              builtins.filter (
                k:
                let
                  pre = if rel == "" then "" else "${rel}/";
                  rest = builtins.substring (builtins.stringLength pre) (-1) k;
                in
                k != rel
                && builtins.substring 0 (builtins.stringLength pre) k == pre
                && builtins.match ".*/.*" rest == null
              ) (builtins.attrNames t);
            linked = rel: builtins.any (p: p == "/" || p == "/${rel}") pathsToLink;
            merge =
              rel: ps:
              if builtins.length ps == 1 then
                { ${rel} = link "${(builtins.head ps).out}/${rel}"; }
              else if builtins.all (p: isDir p.t.${rel}) ps then
                { ${rel} = dir; } // mergeChildren rel ps
              else
                throw "stub buildEnv ${name}: collision on ${rel}";
            mergeChildren =
              rel: ps:
              let
                names = builtins.attrNames (
                  builtins.listToAttrs (
                    map (k: {
                      name = k;
                      value = true;
                    }) (builtins.concatMap (p: childNames rel p.t) ps)
                  )
                );
              in
              builtins.foldl' (
                acc: k: acc // merge k (builtins.filter (p: p.t ? ${k}) ps)
              ) { } names;
            deep = builtins.filter (p: builtins.match "/[^/]+/.+" p != null) pathsToLink;
          in
          assert deep == [ ] || throw "stub buildEnv ${name}: pathsToLink ${toString deep} not modelled";
          builtins.foldl' (
            acc: k: acc // merge k (builtins.filter (p: p.t ? ${k}) providers)
          ) { } (builtins.filter linked (
            builtins.attrNames (
              builtins.listToAttrs (
                map (k: {
                  name = k;
                  value = true;
                }) (builtins.concatMap (p: childNames "" p.t) providers)
              )
            )
          ));
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
          bins = names: builtins.listToAttrs (map (n: { name = "bin/${n}"; value = tree.file 100000 true; }) names);
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
            # The parts of their real layout that matter for merging them.
            bashInteractive = fake "bash-stub" {
              tree = { bin = tree.dir; "bin/sh" = tree.link "bash"; } // bins [ "bash" ];
            };
            coreutils = fake "coreutils-stub" {
              tree = { bin = tree.dir; } // bins [ "cat" "env" "id" "ls" "mkdir" "rm" ];
            };
            cacert = fake "cacert-stub" {
              tree = {
                etc = tree.dir;
                "etc/ssl" = tree.dir;
                "etc/ssl/certs" = tree.dir;
                "etc/ssl/certs/ca-bundle.crt" = tree.file 220000 false;
              };
            };
            buildEnv = args: fake args.name (args // { tree = tree.ofBuildEnv args; });
            # With `passthru.entries` (nix/packages/mk-root.nix) the stubs know what it holds.
            runCommand =
              name: env: script:
              fake name (
                {
                  inherit env script;
                }
                // (if env ? passthru.entries then { tree = tree.ofEntries env.passthru.entries; } else { })
              )
              // (env.passthru or { });
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
