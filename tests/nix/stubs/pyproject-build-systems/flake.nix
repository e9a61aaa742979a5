{
  description = "Offline test stand-in for build-system-pkgs: its overlays, each adding a marker";

  # As at the pinned revision: overlays.sdist, overlays.wheel, and default = sdist.
  outputs =
    { self }:
    {
      overlays = {
        sdist = _final: _prev: { stubBuildSystems = "sdist"; };
        wheel = _final: _prev: { stubBuildSystems = "wheel"; };
        default = self.overlays.sdist;
      };
    };
}
