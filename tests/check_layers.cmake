# Build-time layer check (cmake -DROOT=<source dir> -P check_layers.cmake): engine/ is the pipeline and includes
# nothing from modules/ (the modules, nor the facts layer in modules/facts/). Fails listing every offending line.
file(GLOB_RECURSE files "${ROOT}/engine/*.h" "${ROOT}/engine/*.cc")
set(bad "")
foreach(f IN LISTS files)
  file(STRINGS "${f}" lines REGEX "^[ \t]*#[ \t]*include[ \t]*[\"<]modules/")
  foreach(l IN LISTS lines)
    file(RELATIVE_PATH rel "${ROOT}" "${f}")
    string(APPEND bad "\n  ${rel}: ${l}")
  endforeach()
endforeach()
if(NOT files)
  message(FATAL_ERROR "check_layers: no engine sources below ${ROOT}/engine")
endif()
if(bad)
  message(FATAL_ERROR "engine/ must not include modules/ or the facts layer (move the code, or pass what it needs "
                      "through engine/module.h):${bad}")
endif()
