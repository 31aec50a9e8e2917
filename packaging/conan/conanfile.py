# SPDX-License-Identifier: MIT
# Conan 2 recipe for grpo, after ConanCenter's header-only template (docs/package_templates/header_only).
# Differences from a ConanCenter recipe, both because this one lives in grpo's repository:
#   - the sources are exported from this checkout (export_sources) instead of downloaded in source()
#     (ConanCenter: conandata.yml url + sha256 and get(...)), so `conan create` works offline;
#   - the version is read from include/grpo/core/version.hpp, the single source of truth.
# CI: packaging/conan/ci.sh (conan create + test_package + the docs' conanfile.txt consumer, offline).
import os
import re

from conan import ConanFile
from conan.tools.build import check_min_cppstd
from conan.tools.files import copy, load
from conan.tools.layout import basic_layout

required_conan_version = ">=2.0"


class GrpoConan(ConanFile):
    name = "grpo"
    description = ("Header-only GRPO numerics (advantages, clipped surrogate, KL, fused loss+gradient) "
                   "for C++ training stacks")
    license = "MIT"
    url = "https://github.com/your-org/grpo"
    homepage = "https://github.com/your-org/grpo"
    topics = ("reinforcement-learning", "llm", "policy-optimization", "rlhf", "header-only")
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"
    # The adapters are headers that every package contains; the options only add the framework as a
    # requirement (and the grpo::eigen / grpo::xtensor targets). package_id() clears them, so the package id
    # is the same for every combination. Off by default: Eigen and xtensor come from ConanCenter, which an
    # offline CI cannot reach.
    options = {
        "with_eigen": [True, False],
        "with_xtensor": [True, False],
    }
    default_options = {
        "with_eigen": False,
        "with_xtensor": False,
    }
    no_copy_source = True

    @property
    def _min_cppstd(self):
        return 17

    def set_version(self):
        if self.version:
            return
        header = load(self, os.path.join(self.recipe_folder, "..", "..", "include", "grpo", "core", "version.hpp"))
        parts = [re.search(r"#define GRPO_VERSION_%s (\d+)" % p, header).group(1) for p in ("MAJOR", "MINOR", "PATCH")]
        self.version = ".".join(parts)

    def export_sources(self):
        root = os.path.join(self.recipe_folder, "..", "..")
        copy(self, "*.hpp", src=os.path.join(root, "include"), dst=os.path.join(self.export_sources_folder, "include"))
        copy(self, "*.cuh", src=os.path.join(root, "include"), dst=os.path.join(self.export_sources_folder, "include"))
        copy(self, "LICENSE", src=root, dst=self.export_sources_folder)

    def layout(self):
        # ConanCenter uses src_folder="src" for what source() downloads; exported sources land in the
        # source root, so the default src_folder (".") is the one that finds them.
        basic_layout(self)

    def requirements(self):
        if self.options.with_eigen:
            self.requires("eigen/3.4.0")
        if self.options.with_xtensor:
            self.requires("xtensor/0.24.7")

    def package_id(self):
        self.info.clear()

    def validate(self):
        check_min_cppstd(self, self._min_cppstd)

    def build(self):
        pass

    def package(self):
        copy(self, "LICENSE", src=self.source_folder, dst=os.path.join(self.package_folder, "licenses"))
        copy(self, "*.hpp", src=os.path.join(self.source_folder, "include"), dst=os.path.join(self.package_folder, "include"))
        copy(self, "*.cuh", src=os.path.join(self.source_folder, "include"), dst=os.path.join(self.package_folder, "include"))

    def package_info(self):
        # The same names as grpo's own grpoConfig.cmake: find_package(grpo CONFIG), grpo::grpo,
        # grpo::eigen, grpo::xtensor; pkg-config grpo.
        self.cpp_info.set_property("cmake_file_name", "grpo")
        self.cpp_info.set_property("cmake_target_name", "grpo::grpo_all")
        self.cpp_info.set_property("pkg_config_name", "grpo_all")
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []

        core = self.cpp_info.components["core"]
        core.set_property("cmake_target_name", "grpo::grpo")
        core.set_property("pkg_config_name", "grpo")
        core.bindirs = []
        core.libdirs = []
        if self.settings.os in ("Linux", "FreeBSD"):
            core.system_libs = ["pthread"]

        if self.options.with_eigen:
            eigen = self.cpp_info.components["eigen"]
            eigen.set_property("cmake_target_name", "grpo::eigen")
            eigen.set_property("pkg_config_name", "grpo-eigen")
            eigen.requires = ["core", "eigen::eigen"]
            eigen.bindirs = []
            eigen.libdirs = []
        if self.options.with_xtensor:
            xtensor = self.cpp_info.components["xtensor"]
            xtensor.set_property("cmake_target_name", "grpo::xtensor")
            xtensor.set_property("pkg_config_name", "grpo-xtensor")
            xtensor.requires = ["core", "xtensor::xtensor"]
            xtensor.bindirs = []
            xtensor.libdirs = []
