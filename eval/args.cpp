#include <eval/args.h>

#include <exception>
#include <sstream>

#include <faiss/impl/FaissAssert.h>

namespace faiss_gmm {
namespace eval {

int64_t parse_int(const std::string& option, const std::string& value) {
    size_t used = 0;
    long long v = 0;
    try {
        v = std::stoll(value, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    FAISS_THROW_IF_NOT_FMT(
        used == value.size() && !value.empty(),
        "%s: \"%s\" is not an integer",
        option.c_str(),
        value.c_str());
    return v;
}

float parse_float(const std::string& option, const std::string& value) {
    size_t used = 0;
    float v = 0;
    try {
        v = std::stof(value, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    FAISS_THROW_IF_NOT_FMT(
        used == value.size() && !value.empty(),
        "%s: \"%s\" is not a number",
        option.c_str(),
        value.c_str());
    return v;
}

std::vector<int64_t>
parse_int_list(const std::string& option, const std::string& value) {
    std::vector<int64_t> out;
    std::stringstream in(value);
    std::string item;
    while (std::getline(in, item, ',')) {
        out.push_back(parse_int(option, item));
    }
    FAISS_THROW_IF_NOT_FMT(!out.empty(), "%s: empty list", option.c_str());
    return out;
}

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::stringstream in(s);
    std::string item;
    while (std::getline(in, item, sep)) {
        if (!item.empty()) {
            out.push_back(item);
        }
    }
    return out;
}

} // namespace eval
} // namespace faiss_gmm
