# conc-config.cmake - find_package(conc CONFIG) for an installed conc: the target conc::conc
# SPDX-License-Identifier: MIT
#
# Installed as <prefix>/share/cmake/conc/conc-config.cmake by `make install` and by
# `cmake --install`; it finds the headers relative to itself, so the prefix can move.
get_filename_component(_conc_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
include(CMakeFindDependencyMacro)
find_dependency(Threads)
if(NOT TARGET conc::conc)
  add_library(conc::conc INTERFACE IMPORTED)
  # _DEFAULT_SOURCE: strict C11 (CMAKE_C_EXTENSIONS OFF) hides syscall() and the POSIX calls.
  set_target_properties(conc::conc PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${_conc_prefix}/include"
    INTERFACE_COMPILE_DEFINITIONS "_DEFAULT_SOURCE"
    INTERFACE_LINK_LIBRARIES "Threads::Threads")
endif()
unset(_conc_prefix)
