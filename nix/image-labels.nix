# The worker image's labels besides the title: the values `airnub image build` gives
# Dockerfile.worker's VERSION, REVISION and SOURCE build arguments.
#   revision: the flake's commit; an uncommitted tree has none ("<commit>-dirty" where Nix
#             provides dirtyRev, else "unknown");
#   version:  the root pyproject.toml's project.version;
#   source:   [tool.airnub] image_source (defined there only), or "" as the settings and the
#             Dockerfile give without it.
{ self, root }:
let
  pyproject = builtins.fromTOML (builtins.readFile (root + "/pyproject.toml"));
in
{
  revision = self.rev or self.dirtyRev or "unknown";
  version = pyproject.project.version or "0.0.0";
  source = pyproject.tool.airnub.image_source or "";
}
