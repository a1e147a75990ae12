#include <eval/text_table.h>

#include <algorithm>
#include <sstream>

#include <faiss/impl/FaissAssert.h>

namespace faiss_gmm {
namespace eval {

TextTable::TextTable(std::vector<std::string> header)
    : rows_{std::move(header)} {}

void TextTable::add_row(std::vector<std::string> row) {
    FAISS_THROW_IF_NOT_FMT(
        row.size() == rows_[0].size(),
        "table row has %zu cells, header has %zu",
        row.size(),
        rows_[0].size());
    rows_.push_back(std::move(row));
}

std::string TextTable::str() const {
    std::vector<size_t> width(rows_[0].size(), 0);
    for (const auto& row : rows_) {
        for (size_t c = 0; c < row.size(); c++) {
            width[c] = std::max(width[c], row[c].size());
        }
    }
    std::ostringstream out;
    for (size_t r = 0; r < rows_.size(); r++) {
        for (size_t c = 0; c < rows_[r].size(); c++) {
            const std::string& cell = rows_[r][c];
            if (c == 0) {
                out << cell << std::string(width[c] - cell.size(), ' ');
            } else {
                out << "  " << std::string(width[c] - cell.size(), ' ') << cell;
            }
        }
        out << "\n";
        if (r == 0) {
            size_t total = 0;
            for (size_t w : width) {
                total += w + 2;
            }
            out << std::string(total - 2, '-') << "\n";
        }
    }
    return out.str();
}

} // namespace eval
} // namespace faiss_gmm
