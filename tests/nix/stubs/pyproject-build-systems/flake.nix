{
  description = "Offline test stand-in for build-system-pkgs: an overlay that adds one marker";

  outputs =
    { self }:
    {
      overlays.default = _final: _prev: { stubBuildSystems = true; };
    };
}
