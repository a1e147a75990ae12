#include <datasets/tsv.h>

#include <sstream>

namespace faiss_gmm {
namespace datasets {

std::vector<TsvLine> parse_tsv(const std::string& text) {
    std::vector<TsvLine> lines;
    std::istringstream in(text);
    std::string line;
    int number = 0;
    while (std::getline(in, line)) {
        number++;
        if (line.empty() || line[0] == '#') {
            continue;
        }
        TsvLine record;
        record.number = number;
        std::istringstream fields(line);
        std::string field;
        while (std::getline(fields, field, '\t')) {
            record.fields.push_back(field);
        }
        lines.push_back(record);
    }
    return lines;
}

} // namespace datasets
} // namespace faiss_gmm
