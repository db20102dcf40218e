"""Ahead-of-time builds: model functions as libraries that run without Python or a compiler.

    kcomp.aot.build(function_or_model_or_h5, "out/mlp", name="mlp")   # or: kcomp build ...
    artifact = kcomp.aot.load("out/mlp")                              # no compiler needed
    outputs = artifact([x])

The artifact's C API is in out/mlp/include/mlp.h; a C or C++ program links it with CMake's
find_package(mlp) (see examples/cpp_consumer).
"""
from .build import BuildError, build, check_name
from .load import Artifact, ArtifactError, load

__all__ = ["build", "load", "Artifact", "ArtifactError", "BuildError", "check_name"]
