# Read by ctest (a TEST_INCLUDE_FILES script, run each time ctest starts): registers every integration test
# suite of labfleet_tests as its own ctest test, so `ctest -j N` runs sandbox suites side by side. The suites
# are listed by the test binary itself (`--list-test-suites`): a suite added in a new file needs no edit here.
#
# Inputs (set by the generated wrapper in the build folder): LABFLEET_TESTS_EXE.
# Suites that must run alone are marked RUN_SERIAL below, with the reason.

if(NOT EXISTS "${LABFLEET_TESTS_EXE}")
  add_test(integration-discovery "${LABFLEET_TESTS_EXE}")  # fails: the binary is not built
  return()
endif()

execute_process(
  COMMAND "${LABFLEET_TESTS_EXE}" --list-test-suites --test-suite=integration*
  OUTPUT_VARIABLE _lf_out
  ERROR_VARIABLE _lf_err
  RESULT_VARIABLE _lf_rc)
string(REPLACE "\n" ";" _lf_lines "${_lf_out}")
set(_lf_suites "")
foreach(_lf_line IN LISTS _lf_lines)
  if(_lf_line MATCHES "^integration-[A-Za-z0-9_-]+$")
    list(APPEND _lf_suites "${_lf_line}")
  endif()
endforeach()

if(NOT _lf_rc EQUAL 0 OR _lf_suites STREQUAL "")
  # Never a silent pass: a binary that lists no integration suite is a failure of its own.
  add_test(integration-discovery /bin/sh -c
    "echo 'labfleet_tests --list-test-suites listed no integration suite (exit ${_lf_rc}): ${_lf_err}' >&2; exit 1")
  return()
endif()

foreach(_lf_suite IN LISTS _lf_suites)
  add_test("${_lf_suite}" "${LABFLEET_TESTS_EXE}" "--test-suite=${_lf_suite}")
  set_tests_properties("${_lf_suite}" PROPERTIES TIMEOUT 900 LABELS integration)
endforeach()

# integration-sandbox kills sandbox owners with SIGKILL/SIGTERM and then checks that nothing of theirs is left
# (mounts, loop devices, namespaces): another suite's nodes coming and going at that moment make those checks
# ambiguous, so it runs alone.
list(FIND _lf_suites "integration-sandbox" _lf_at)  # ctest scripts run without policies: no IN_LIST
if(NOT _lf_at EQUAL -1)
  set_tests_properties(integration-sandbox PROPERTIES RUN_SERIAL TRUE)
endif()
