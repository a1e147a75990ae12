# Installs the build tree into a scratch prefix, then configures, builds and
# runs tests/find_package_consumer against it with find_package(faiss_gmm).
# Inputs: BUILD_DIR, SOURCE_DIR, WORK_DIR, GENERATOR, FAISS_DIR_USED (the
# faiss_DIR of the build, handed to the consumer so that it links the same
# FAISS), CONSUMER_CXX_FLAGS / CONSUMER_LINKER_FLAGS (the build's own, e.g.
# sanitizers, which the installed static library needs at link time).
file(REMOVE_RECURSE ${WORK_DIR})
function(run_step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "step failed (${rc}): ${ARGN}\n${out}")
  endif()
endfunction()
run_step(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/prefix)
run_step(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/find_package_consumer -B ${WORK_DIR}/build
         -G ${GENERATOR} -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix
         -Dfaiss_DIR=${FAISS_DIR_USED}
         "-DCMAKE_CXX_FLAGS=${CONSUMER_CXX_FLAGS}"
         "-DCMAKE_EXE_LINKER_FLAGS=${CONSUMER_LINKER_FLAGS}"
         -DEXAMPLE_SOURCE=${SOURCE_DIR}/tests/readme_example.cpp)
run_step(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
execute_process(COMMAND ${WORK_DIR}/build/consumer WORKING_DIRECTORY ${WORK_DIR} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the installed consumer exited with ${rc}")
endif()
