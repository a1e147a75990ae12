# Fails when README.md does not contain tests/readme_example.cpp verbatim, so
# the usage example in the README is always the one the test suite builds.
file(READ ${SOURCE_DIR}/README.md readme)
file(READ ${SOURCE_DIR}/tests/readme_example.cpp example)
string(FIND "${readme}" "${example}" position)
if(position EQUAL -1)
  message(FATAL_ERROR "README.md does not contain tests/readme_example.cpp verbatim")
endif()
