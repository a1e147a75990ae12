/**
 * Internal (not installed): the progress line of a long add: vectors done
 * out of n, the rate and the estimated time left. On a terminal one line
 * rewritten in place at most once a second; into a file or pipe (a log)
 * one line every 10 seconds, so that logs stay short.
 */

#pragma once

#include <unistd.h>

#include <cinttypes>
#include <cstdint>
#include <cstdio>

#include <faiss/utils/utils.h>

namespace faiss_gmm {
namespace impl {

/** Prints "who: done / n vectors, rate, ETA" while an add runs. */
class AddProgress {
   public:
    /**
     * @param on  print anything at all (the index's verbose flag)
     * @param who prefix of the line (not copied: must outlive this object)
     * @param n   vectors the add will store
     */
    AddProgress(bool on, const char* who, int64_t n)
        : on_(on),
          tty_(on && isatty(fileno(stdout))),
          who_(who),
          n_(n),
          t0_(faiss::getmillisecs()),
          last_(t0_) {}

    /// `done` vectors are stored; prints when the interval has passed.
    void update(int64_t done) {
        if (!on_) {
            return;
        }
        const double now = faiss::getmillisecs();
        if (now - last_ < (tty_ ? 1000 : 10000)) {
            return;
        }
        last_ = now;
        const double seconds = (now - t0_) / 1000;
        const double rate = seconds > 0 ? done / seconds : 0;
        const double eta = rate > 0 ? (n_ - done) / rate : 0;
        printf(
            "%s%s: %" PRId64 " / %" PRId64
            " vectors, %.3f M vectors/s, ETA %.0f s%s",
            tty_ ? "\r" : "",
            who_,
            done,
            n_,
            rate / 1e6,
            eta,
            tty_ ? "   " : "\n");
        fflush(stdout);
        open_line_ = tty_;
    }

    /// Ends a line left open on a terminal.
    void finish() {
        if (open_line_) {
            printf("\n");
            open_line_ = false;
        }
    }

   private:
    bool on_;
    bool tty_;
    const char* who_;
    int64_t n_;
    double t0_;
    double last_;
    bool open_line_ = false;
};

} // namespace impl
} // namespace faiss_gmm
