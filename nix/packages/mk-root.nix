# mkRoot name entries: an image's root filesystem as ONE store path, for nix2container's
# `copyToRoot`. One path, so no two copyToRoot paths can provide the same file: nix2container
# refuses a path added twice with another mode, size or perms (its nix/graph.go), e.g. `/etc`
# as a directory in one path and a link in another.
#
# Each entry names a path relative to / and one of:
#   dir = true                       an empty directory
#   text = "...";                    a file with this content
#   source = ./file; executable = b; a copy of a file (executable: mode 0555, else 0444)
#   tree = ./dir; include = "re";    a copy of a directory: its files whose name matches `re`
#                                    (default: all), with the folders
#   link = "<target>";               a symbolic link
#   run = "<shell command>";         a file the command writes to "$dest" (mode 0444)
# Parent directories are made as needed. The entries are kept as `passthru.entries`: the
# offline test stubs (tests/nix/stubs) read them to know which files the root holds.
{ runCommand }:
name: entries:
let
  quote = s: "'" + builtins.replaceStrings [ "'" ] [ "'\\''" ] s + "'";
  # Sources are Nix paths (not store paths), so the stubs can read them without building.
  checkPath =
    e: v:
    if builtins.isPath v then v else throw "mkRoot ${name}: ${e.path}: give a Nix path, not ${toString v}";
  filtered =
    e:
    builtins.path {
      name = "${name}-${baseNameOf e.path}";
      path = checkPath e e.tree;
      filter =
        path: type: type == "directory" || builtins.match (e.include or ".*") (baseNameOf path) != null;
    };
  dest = e: "\"$out\"/" + quote e.path;
  parent = e: "mkdir -p \"$out\"/" + quote (dirOf e.path);
  step =
    e:
    if e ? dir then
      "mkdir -p ${dest e}"
    else if e ? text then
      "${parent e}\nprintf '%s' ${quote e.text} >${dest e}"
    else if e ? source then
      "${parent e}\ncp ${quote "${checkPath e e.source}"} ${dest e}\nchmod ${
        if e.executable or false then "0555" else "0444"
      } ${dest e}"
    else if e ? tree then
      "${parent e}\ncp -r --no-preserve=mode ${quote "${filtered e}"} ${dest e}"
    else if e ? link then
      "${parent e}\nln -s ${quote e.link} ${dest e}"
    else if e ? run then
      "${parent e}\ndest=${dest e}\n${e.run}\nchmod 0444 \"$dest\""
    else
      throw "mkRoot ${name}: entry ${e.path} has none of dir, text, source, tree, link, run";
  paths = map (e: e.path) entries;
  unique = builtins.length paths == builtins.length (builtins.attrNames (
    builtins.listToAttrs (map (p: { name = p; value = true; }) paths)
  ));
in
assert unique || throw "mkRoot ${name}: a path is listed twice";
runCommand name { passthru = { inherit entries; }; } ''
  mkdir -p "$out"
  ${builtins.concatStringsSep "\n" (map step entries)}
''
