# SPDX-License-Identifier: MIT
import os

from conan import ConanFile
from conan.tools.build import can_run
from conan.tools.cmake import CMake, cmake_layout


class TestPackageConan(ConanFile):
    settings = "os", "arch", "compiler", "build_type"
    generators = "CMakeDeps", "CMakeToolchain", "VirtualRunEnv"
    test_type = "explicit"

    def requirements(self):
        self.requires(self.tested_reference_str)

    def layout(self):
        cmake_layout(self)

    def build(self):
        cmake = CMake(self)
        variables = {
            "GRPO_TEST_EIGEN": bool(self.dependencies["grpo"].options.with_eigen),
            "GRPO_TEST_XTENSOR": bool(self.dependencies["grpo"].options.with_xtensor),
        }
        cmake.configure(variables=variables)
        cmake.build()

    def test(self):
        if can_run(self):
            for exe in ("test_package", "test_package_eigen", "test_package_xtensor"):
                path = os.path.join(self.cpp.build.bindir, exe)
                if exe == "test_package" or os.path.exists(path):
                    self.run(path, env="conanrun")
