"""Building generated code: the toolchain (probed once with CMake), Ninja builds, the cache."""
