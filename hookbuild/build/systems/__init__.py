"""The upstream build interfaces hookbuild drives, one module each, behind `build.spec.BuildSystem`."""
