/**
 * The plain-text tables faiss_gmm_eval prints: a header, a rule, then rows,
 * each column as wide as its widest cell.
 */

#pragma once

#include <string>
#include <vector>

namespace faiss_gmm {
namespace eval {

/// Text table: first column (names) left-aligned, the others (numbers)
/// right-aligned.
class TextTable {
   public:
    /// A table with these column headers.
    explicit TextTable(std::vector<std::string> header);

    /// Appends a row; throws unless it has one cell per header.
    void add_row(std::vector<std::string> row);

    /// The table, one line per row, a rule under the header.
    std::string str() const;

   private:
    std::vector<std::vector<std::string>> rows_;
};

} // namespace eval
} // namespace faiss_gmm
