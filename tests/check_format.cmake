# Fails when a C++/CUDA source of ours differs from its clang-format output
# (the repo's .clang-format). Inputs: SOURCE_DIR, CLANG_FORMAT.
set(files)
foreach(dir faiss_gmm kernels datasets eval tests)
  file(GLOB_RECURSE found ${SOURCE_DIR}/${dir}/*.h ${SOURCE_DIR}/${dir}/*.cpp
                          ${SOURCE_DIR}/${dir}/*.cu ${SOURCE_DIR}/${dir}/*.cuh)
  list(APPEND files ${found})
endforeach()
execute_process(COMMAND ${CLANG_FORMAT} --dry-run --Werror ${files}
                WORKING_DIRECTORY ${SOURCE_DIR}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "not clang-formatted (run clang-format -i on these):\n${out}")
endif()
