# Warning and sanitizer settings shared by every ipsentry target.
#
# ipsentry_module(<name> SOURCES ... DEPS ...) declares one library target per
# module folder, so dependencies between modules are explicit and one-way.

add_library(ipsentry_build_flags INTERFACE)
target_compile_options(ipsentry_build_flags INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wcast-align
  -Woverloaded-virtual -Wimplicit-fallthrough
  -Wformat=2)
if(IPSENTRY_WERROR)
  target_compile_options(ipsentry_build_flags INTERFACE -Werror)
endif()

if(IPSENTRY_SANITIZE STREQUAL "address-undefined")
  target_compile_options(ipsentry_build_flags INTERFACE
    -fsanitize=address,undefined -fno-sanitize-recover=undefined
    -fno-omit-frame-pointer)
  target_link_options(ipsentry_build_flags INTERFACE
    -fsanitize=address,undefined -fno-sanitize-recover=undefined)
elseif(NOT IPSENTRY_SANITIZE STREQUAL "")
  message(FATAL_ERROR "IPSENTRY_SANITIZE must be empty or address-undefined, not '${IPSENTRY_SANITIZE}'")
endif()

function(ipsentry_module name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(ipsentry_${name} STATIC ${ARG_SOURCES})
  add_library(ipsentry::${name} ALIAS ipsentry_${name})
  target_include_directories(ipsentry_${name} PUBLIC
    ${CMAKE_CURRENT_SOURCE_DIR}/include)
  target_link_libraries(ipsentry_${name}
    PUBLIC ${ARG_DEPS}
    PRIVATE ipsentry_build_flags ${ARG_PRIVATE_DEPS})
  # The sanitizer flags must reach whoever links the library too.
  if(NOT IPSENTRY_SANITIZE STREQUAL "")
    target_link_options(ipsentry_${name} INTERFACE
      -fsanitize=address,undefined)
  endif()
endfunction()
