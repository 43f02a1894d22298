# libFuzzer harnesses (docs/fuzzing.md), included by the top CMakeLists.txt
# (same directory scope: the harnesses use its generated embedded_lua.c) only
# with -DEVENTILATOR_FUZZ=ON and clang: cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DEVENTILATOR_FUZZ=ON
# The normal gcc build never reads this file.
if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "EVENTILATOR_FUZZ needs clang: cmake -DCMAKE_C_COMPILER=clang -DEVENTILATOR_FUZZ=ON ...")
endif()
find_program(PYTHON3 NAMES python3 REQUIRED)

set(FUZZ_FLAGS -fsanitize=fuzzer,address,undefined,float-cast-overflow -fno-sanitize-recover=undefined
    -fno-omit-frame-pointer -g)
set(SHARED_DIR ${CMAKE_SOURCE_DIR}/../shared)
set(SEEDS ${OUT}/fuzz/seeds)

# Seeds are generated, never committed: from ../shared/sentinel (what a real
# Sentinel sends), ../shared/legacy and conf/.
file(GLOB SEED_INPUTS CONFIGURE_DEPENDS ${SHARED_DIR}/sentinel/* ${SHARED_DIR}/legacy/*
     ${CMAKE_SOURCE_DIR}/conf/*)
add_custom_command(
  OUTPUT ${SEEDS}/.stamp
  COMMAND ${PYTHON3} ${CMAKE_CURRENT_LIST_DIR}/seeds.py ${SHARED_DIR} ${CMAKE_SOURCE_DIR} ${SEEDS}
  COMMAND ${CMAKE_COMMAND} -E touch ${SEEDS}/.stamp
  DEPENDS ${CMAKE_CURRENT_LIST_DIR}/seeds.py ${SEED_INPUTS}
  COMMENT "fuzz seed corpora from ../shared")
add_custom_target(fuzz_seeds DEPENDS ${SEEDS}/.stamp)

function(evl_fuzzer name dirs)
  add_executable(${name} ${ARGN})
  target_compile_options(${name} PRIVATE ${FUZZ_FLAGS})
  target_link_options(${name} PRIVATE ${FUZZ_FLAGS})
  target_include_directories(${name} PRIVATE ${dirs})
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${OUT}/fuzz)
  add_dependencies(${name} fuzz_seeds)
endfunction()

evl_fuzzer(fuzz_event "${CORE_DIRS}" fuzz/fuzz_event.c src/core/event.c src/core/nearest.c)

# The harness compiles lredis.c itself (#include): its static reply mapping, no fuzz-only code in it.
evl_fuzzer(fuzz_redis_reply "${BINDING_DIRS}" fuzz/fuzz_redis_reply.c)
target_link_libraries(fuzz_redis_reply PRIVATE PkgConfig::LUA PkgConfig::HIREDIS m)

# The config loader as the binary runs it: the core alone.
evl_fuzzer(fuzz_config "${CORE_DIRS}" fuzz/fuzz_config.c ${CORE_SRC})
target_link_libraries(fuzz_config PRIVATE PkgConfig::LUA m dl)

add_custom_target(fuzzers DEPENDS fuzz_event fuzz_redis_reply fuzz_config)
