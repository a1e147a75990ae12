/**
 * Parsing of command-line values shared by faiss_gmm_eval and the bench
 * programs: each parser throws a faiss::FaissException naming the option
 * and the bad value.
 */

#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace faiss_gmm {
namespace eval {

/**
 * The whole of value as an integer.
 *
 * @param option the option's name, for the error message
 * @param value  its text
 */
int64_t parse_int(const std::string& option, const std::string& value);

/// The whole of value as a float (parameters as parse_int).
float parse_float(const std::string& option, const std::string& value);

/**
 * A comma-separated list of integers, at least one; an empty item is an
 * error (parameters as parse_int).
 */
std::vector<int64_t>
parse_int_list(const std::string& option, const std::string& value);

/**
 * The non-empty items of s between the separators.
 *
 * @param s   text to split
 * @param sep separator character
 */
std::vector<std::string> split(const std::string& s, char sep);

} // namespace eval
} // namespace faiss_gmm
