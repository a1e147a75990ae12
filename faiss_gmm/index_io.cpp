/**
 * The faiss-gmm file format (index_io.h documents it): checksummed writer
 * and bounds-checking reader, then one writer / reader pair per payload
 * (GaussianMixture, IndexIVFGMM, IndexPreTransform, IndexRefine). One
 * concept, the format, in one file (~1250 lines), as FAISS keeps
 * index_read.cpp and index_write.cpp.
 */

#include <faiss_gmm/index_io.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <vector>

#include <faiss/IndexFlat.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/IndexRefine.h>
#include <faiss/VectorTransform.h>
#include <faiss/clone_index.h>
#include <faiss/impl/FaissAssert.h>
#include <faiss/impl/ThreadedIndex.h>
#include <faiss/index_io.h>
#include <faiss/invlists/InvertedLists.h>

#include <faiss_gmm/IndexIVFGMM.h>
#include <faiss_gmm/impl/ClassName.h>

namespace faiss_gmm {

namespace {

// ---- format constants ------------------------------------------------------

/// faiss::fourcc at compile time: the four characters, first in the low byte
constexpr uint32_t make_fourcc(const char (&s)[5]) {
    return uint32_t(uint8_t(s[0])) | uint32_t(uint8_t(s[1])) << 8 |
           uint32_t(uint8_t(s[2])) << 16 | uint32_t(uint8_t(s[3])) << 24;
}
constexpr uint32_t kFourccIVFGMM = make_fourcc("GmIv");
constexpr uint32_t kFourccPreTransform = make_fourcc("GmPT");
/// IndexRefine / IndexRefineFlat around an index holding an IndexIVFGMM
constexpr uint32_t kFourccRefine = make_fourcc("GmRf");
/// IndexIDMap(2) payloads of format 1, refused with a message
constexpr uint32_t kFourccIDMapV1 = make_fourcc("GmMp");
constexpr uint32_t kFourccIDMap2V1 = make_fourcc("GmM2");
constexpr uint32_t kFourccGMM = make_fourcc("GmMx");

/// Format versions written by this build (and the only ones it reads).
/// IndexIVFGMM 2: parameters as key=value strings, the code as a FAISS
/// index (format 1 stored IVF-Flat lists of its own).
constexpr uint32_t kVersionIVFGMM = 2;
constexpr uint32_t kVersionWrapper = 1;
/// GaussianMixture 2: version 1 + the covariances (k * d * d floats, or
/// none) of a full-covariance model; their Cholesky factors are recomputed
/// on reading (deterministic, so a round trip is exact). Models of the other
/// covariance types are still written as version 1, which every build reads.
constexpr uint32_t kVersionGMM = 2;
constexpr uint32_t kVersionGMMNoCovariances = 1;

// Sane bounds on counts read from a file.
constexpr int64_t kMaxDim = int64_t(1) << 16;
constexpr uint64_t kMaxNlist = uint64_t(1) << 24;
constexpr int64_t kMaxNtotal = int64_t(1) << 40;
constexpr uint64_t kMaxOtherListsWidth = uint64_t(kMaxAssign - 1);
constexpr uint64_t kMaxIterationStats = uint64_t(1) << 20;
constexpr uint32_t kMaxChain = 256;
constexpr uint64_t kMaxParameterStringBytes = uint64_t(1) << 16;
constexpr uint64_t kMaxCodeSize = uint64_t(1) << 20;
/// Largest CovarianceType value. Tied models are stored exactly as
/// spherical ones (k variances), so adding TiedSpherical needed no version
/// bump: a reader that predates it rejects the value by this bound. Full
/// models need GaussianMixture version 2.
constexpr int kMaxCovarianceType = int(CovarianceType::Full);
/// Arrays are read in chunks of this many bytes when the input size is not
/// known, so a corrupt count can only allocate what the input delivers.
constexpr size_t kReadChunkBytes = size_t(1) << 20;

/**
 * 64-bit checksum of a byte stream, independent of how the stream is split
 * into update() calls (writer and reader split differently): 8-byte
 * little-endian words w, h = mix(h ^ w) with mix(x) = x * K, x ^= x >> 32
 * (both bijective, so any single changed word changes the result); the last
 * partial word is zero-padded, then the byte length is mixed in.
 */
struct Checksum {
    uint64_t h = 0xcbf29ce484222325ULL;
    uint64_t length = 0;
    uint8_t tail[8];
    size_t ntail = 0;

    static uint64_t mix(uint64_t x) {
        x *= 0x9e3779b97f4a7c15ULL;
        return x ^ (x >> 32);
    }

    void update(const void* data, size_t n) {
        const auto* p = static_cast<const uint8_t*>(data);
        length += n;
        while (ntail > 0 && ntail < 8 && n > 0) {
            tail[ntail++] = *p++;
            n--;
        }
        if (ntail == 8) {
            h = mix(h ^ load_word(tail));
            ntail = 0;
        }
        for (; n >= 8; p += 8, n -= 8) {
            h = mix(h ^ load_word(p));
        }
        for (; n > 0; n--) {
            tail[ntail++] = *p++;
        }
    }

    uint64_t finish() const {
        uint8_t last[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        memcpy(last, tail, ntail);
        return mix(mix(h ^ load_word(last)) ^ length);
    }

    static uint64_t load_word(const uint8_t* p) {
        uint64_t w = 0;
        for (int i = 7; i >= 0; i--) {
            w = (w << 8) | p[i];
        }
        return w;
    }
};

uint64_t checksum_of(const std::vector<uint8_t>& bytes) {
    Checksum c;
    c.update(bytes.data(), bytes.size());
    return c.finish();
}

// ---- writing ---------------------------------------------------------------

/**
 * An IOWriter in front of the caller's writer that keeps the checksum of
 * every payload being written (payloads nest: a wrapper holds a sub-index).
 */
struct ChecksumWriter : faiss::IOWriter {
    faiss::IOWriter* sink;
    std::vector<Checksum> checksums; ///< one per open payload

    explicit ChecksumWriter(faiss::IOWriter* sink) : sink(sink) {
        name = sink->name;
    }

    size_t operator()(const void* ptr, size_t size, size_t nitems) override {
        size_t written = (*sink)(ptr, size, nitems);
        for (Checksum& c : checksums) {
            c.update(ptr, written * size);
        }
        return written;
    }

    int FAISS_GMM_IO_DESCRIPTOR_METHOD() override {
        return sink->FAISS_GMM_IO_DESCRIPTOR_METHOD();
    }
};

void write_bytes(faiss::IOWriter* writer, const void* ptr, size_t nbytes) {
    if (nbytes == 0) {
        return;
    }
    size_t written = (*writer)(ptr, 1, nbytes);
    FAISS_THROW_IF_NOT_FMT(
        written == nbytes,
        "write error in %s: wrote %zu of %zu bytes",
        writer->name.c_str(),
        written,
        nbytes);
}

template <typename T>
void write_value(faiss::IOWriter* writer, T value) {
    write_bytes(writer, &value, sizeof(T));
}

template <typename T>
void write_array(faiss::IOWriter* writer, const std::vector<T>& v) {
    write_value<uint64_t>(writer, v.size());
    write_bytes(writer, v.data(), v.size() * sizeof(T));
}

/// starts a payload: its checksum covers every byte up to end_payload
void begin_payload(ChecksumWriter& w, uint32_t fourcc, uint32_t version) {
    w.checksums.emplace_back();
    write_value<uint32_t>(&w, fourcc);
    write_value<uint32_t>(&w, version);
}

/// closes the payload opened last by writing its checksum
void end_payload(ChecksumWriter& w) {
    uint64_t checksum = w.checksums.back().finish();
    w.checksums.pop_back();
    write_value<uint64_t>(&w, checksum);
}

// ---- reading ---------------------------------------------------------------

/**
 * An IOReader in front of the caller's reader: counts the bytes consumed,
 * knows how many are left when the input size is known (VectorIOReader,
 * regular files), and can give back bytes it has peeked so that FAISS reads
 * a foreign file from its start. FAISS reads nested parts through it too.
 */
struct CheckedReader : faiss::IOReader {
    faiss::IOReader* source;
    bool size_known = false;
    size_t source_remaining = 0; ///< bytes left in source, when size_known
    std::vector<uint8_t> pushback;
    size_t pushback_pos = 0;
    std::vector<Checksum> checksums; ///< one per open payload

    explicit CheckedReader(faiss::IOReader* source) : source(source) {
        name = source->name.empty() ? "(unnamed reader)" : source->name;
        if (auto* vr = dynamic_cast<faiss::VectorIOReader*>(source)) {
            size_known = true;
            source_remaining =
                vr->rp < vr->data.size() ? vr->data.size() - vr->rp : 0;
        } else if (auto* fr = dynamic_cast<faiss::FileIOReader*>(source)) {
            struct stat st;
            off_t pos = fr->f ? ftello(fr->f) : -1;
            if (pos >= 0 && fstat(::fileno(fr->f), &st) == 0 &&
                S_ISREG(st.st_mode)) {
                size_known = true;
                source_remaining = st.st_size > pos ? st.st_size - pos : 0;
            }
        }
    }

    size_t remaining() const {
        return (pushback.size() - pushback_pos) + source_remaining;
    }

    size_t operator()(void* ptr, size_t size, size_t nitems) override {
        if (size == 0 || nitems == 0) {
            return 0;
        }
        FAISS_THROW_IF_NOT_FMT(
            nitems <= std::numeric_limits<size_t>::max() / size,
            "read of %zu items of %zu bytes overflows",
            nitems,
            size);
        size_t nbytes = size * nitems;
        auto* out = static_cast<uint8_t*>(ptr);
        size_t got = std::min(nbytes, pushback.size() - pushback_pos);
        if (got > 0) {
            memcpy(out, pushback.data() + pushback_pos, got);
            pushback_pos += got;
        }
        // bytes given back by unread() were checksummed when first read
        const size_t from_pushback = got;
        while (got < nbytes) {
            size_t r = (*source)(out + got, 1, nbytes - got);
            if (r == 0) {
                break;
            }
            got += r;
            source_remaining -= std::min(source_remaining, r);
        }
        for (Checksum& c : checksums) {
            c.update(out + from_pushback, got - from_pushback);
        }
        return got / size;
    }

    int FAISS_GMM_IO_DESCRIPTOR_METHOD() override {
        return source->FAISS_GMM_IO_DESCRIPTOR_METHOD();
    }

    /// Makes the next read return these bytes first.
    void unread(const void* ptr, size_t nbytes) {
        const auto* p = static_cast<const uint8_t*>(ptr);
        pushback.erase(pushback.begin(), pushback.begin() + pushback_pos);
        pushback.insert(pushback.begin(), p, p + nbytes);
        pushback_pos = 0;
    }

    void read_exact(void* ptr, size_t nbytes, const char* field) {
        if (nbytes == 0) {
            return;
        }
        FAISS_THROW_IF_NOT_FMT(
            !size_known || nbytes <= remaining(),
            "truncated input %s: field %s needs %zu bytes, %zu left",
            name.c_str(),
            field,
            nbytes,
            remaining());
        size_t got = (*this)(ptr, 1, nbytes);
        FAISS_THROW_IF_NOT_FMT(
            got == nbytes,
            "truncated input %s: field %s got %zu of %zu bytes",
            name.c_str(),
            field,
            got,
            nbytes);
    }

    template <typename T>
    T read_value(const char* field) {
        T value;
        read_exact(&value, sizeof(T), field);
        return value;
    }

    /// count items of type T; allocates only as the input delivers them
    template <typename T>
    void read_array(std::vector<T>& v, uint64_t count, const char* field) {
        FAISS_THROW_IF_NOT_FMT(
            count <= std::numeric_limits<size_t>::max() / sizeof(T),
            "corrupt input %s: field %s has count %llu",
            name.c_str(),
            field,
            (unsigned long long)count);
        FAISS_THROW_IF_NOT_FMT(
            !size_known || count * sizeof(T) <= remaining(),
            "corrupt or truncated input %s: field %s has %llu items "
            "(%llu bytes) but only %zu bytes are left",
            name.c_str(),
            field,
            (unsigned long long)count,
            (unsigned long long)(count * sizeof(T)),
            remaining());
        v.clear();
        if (size_known) {
            v.resize(count);
            read_exact(v.data(), count * sizeof(T), field);
            return;
        }
        const size_t chunk = std::max<size_t>(1, kReadChunkBytes / sizeof(T));
        while (v.size() < count) {
            size_t n = std::min<size_t>(chunk, count - v.size());
            size_t old = v.size();
            v.resize(old + n);
            read_exact(v.data() + old, n * sizeof(T), field);
        }
    }
};

/// integer in [lo, hi] (lo >= 0), else throws naming the field and value
template <typename T>
T read_bounded(CheckedReader& in, const char* field, uint64_t lo, uint64_t hi) {
    T value = in.read_value<T>(field);
    bool negative = std::is_signed<T>::value && int64_t(value) < 0;
    FAISS_THROW_IF_NOT_FMT(
        !negative && uint64_t(value) >= lo && uint64_t(value) <= hi,
        "corrupt input %s: field %s = %lld outside [%llu, %llu]",
        in.name.c_str(),
        field,
        (long long)value,
        (unsigned long long)lo,
        (unsigned long long)hi);
    return value;
}

bool read_bool(CheckedReader& in, const char* field) {
    return read_bounded<uint8_t>(in, field, 0, 1) != 0;
}

template <typename T>
T read_finite(CheckedReader& in, const char* field) {
    T value = in.read_value<T>(field);
    FAISS_THROW_IF_NOT_FMT(
        std::isfinite(value),
        "corrupt input %s: field %s = %g is not finite",
        in.name.c_str(),
        field,
        double(value));
    return value;
}

/// starts a payload whose fourcc was just read: opens its checksum and
/// checks the version
/// opens a payload whose format version must lie in [oldest, newest];
/// returns the version
uint32_t begin_payload(
    CheckedReader& in,
    uint32_t fourcc,
    const char* what,
    uint32_t oldest,
    uint32_t newest) {
    in.checksums.emplace_back();
    in.checksums.back().update(&fourcc, sizeof(fourcc));
    uint32_t version = in.read_value<uint32_t>("version");
    if (oldest == newest) {
        FAISS_THROW_IF_NOT_FMT(
            version == newest,
            "input %s: %s format version %u is not supported (this build "
            "reads version %u)",
            in.name.c_str(),
            what,
            version,
            newest);
    }
    FAISS_THROW_IF_NOT_FMT(
        version >= oldest && version <= newest,
        "input %s: %s format version %u is not supported (this build "
        "reads versions %u to %u)",
        in.name.c_str(),
        what,
        version,
        oldest,
        newest);
    return version;
}

/// opens a payload whose format version must be `supported`
void begin_payload(
    CheckedReader& in, uint32_t fourcc, const char* what, uint32_t supported) {
    begin_payload(in, fourcc, what, supported, supported);
}

/// closes the payload opened last: the stored checksum must match
void end_payload(CheckedReader& in, const char* what) {
    uint64_t computed = in.checksums.back().finish();
    in.checksums.pop_back();
    uint64_t stored = in.read_value<uint64_t>("checksum");
    FAISS_THROW_IF_NOT_FMT(
        stored == computed,
        "corrupt input %s: %s checksum 0x%016llx does not match its bytes "
        "(0x%016llx)",
        in.name.c_str(),
        what,
        (unsigned long long)stored,
        (unsigned long long)computed);
}

/// Runs a FAISS reader, turning its non-FAISS exceptions (bad_alloc from a
/// corrupt size, ...) into faiss::FaissException.
template <typename F>
auto call_faiss_reader(const std::string& source, const char* what, F f)
    -> decltype(f()) {
    try {
        return f();
    } catch (const faiss::FaissException&) {
        throw;
    } catch (const std::exception& e) {
        FAISS_THROW_FMT(
            "corrupt input %s: FAISS could not read the %s (%s)",
            source.c_str(),
            what,
            e.what());
    }
}

// ---- GaussianMixture -------------------------------------------------------

void write_gmm_payload(const GaussianMixture& gmm, ChecksumWriter& cw) {
    faiss::IOWriter* w = &cw;
    const bool full = gmm.covariance == CovarianceType::Full;
    begin_payload(
        cw, kFourccGMM, full ? kVersionGMM : kVersionGMMNoCovariances);
    write_value<int32_t>(w, gmm.d);
    write_value<int32_t>(w, gmm.k);
    write_value<int32_t>(w, int32_t(gmm.covariance));
    write_value<uint8_t>(w, gmm.is_trained);
    write_value<float>(w, gmm.variance_floor);
    write_array(w, gmm.weights);
    write_array(w, gmm.means);
    write_array(w, gmm.variances);
    write_value<uint64_t>(w, gmm.iteration_stats.size());
    for (const GmmIterationStats& s : gmm.iteration_stats) {
        write_value<int32_t>(w, s.iteration);
        write_value<double>(w, s.log_likelihood);
        write_value<double>(w, s.time_s);
        write_value<float>(w, s.min_weight);
        write_value<float>(w, s.min_variance);
        write_value<int32_t>(w, s.n_reseeded);
    }
    if (full) {
        write_array(w, gmm.covariances);
    }
    end_payload(cw);
}

/// reads an array whose size must be 0 (untrained) or `expected`
void read_model_array(
    CheckedReader& in,
    std::vector<float>& v,
    uint64_t expected,
    bool trained,
    const char* field) {
    uint64_t n = in.read_value<uint64_t>(field);
    FAISS_THROW_IF_NOT_FMT(
        n == expected || (!trained && n == 0),
        "corrupt input %s: field %s has %llu values, expected %llu",
        in.name.c_str(),
        field,
        (unsigned long long)n,
        (unsigned long long)expected);
    in.read_array(v, n, field);
}

GaussianMixture read_gmm_payload(CheckedReader& in) {
    uint32_t h = in.read_value<uint32_t>("fourcc");
    FAISS_THROW_IF_NOT_FMT(
        h == kFourccGMM,
        "input %s: expected a GaussianMixture (fourcc GmMx), found "
        "fourcc 0x%08x (%s)",
        in.name.c_str(),
        h,
        faiss::fourcc_inv_printable(h).c_str());
    const uint32_t version = begin_payload(
        in, h, "GaussianMixture", kVersionGMMNoCovariances, kVersionGMM);
    GaussianMixture gmm;
    gmm.d = read_bounded<int32_t>(in, "gmm.d", 0, kMaxDim);
    gmm.k = read_bounded<int32_t>(in, "gmm.k", 0, kMaxNlist);
    gmm.covariance = CovarianceType(
        read_bounded<int32_t>(in, "gmm.covariance", 0, kMaxCovarianceType));
    const bool full = gmm.covariance == CovarianceType::Full;
    FAISS_THROW_IF_NOT_FMT(
        !full || version >= kVersionGMM,
        "corrupt input %s: full-covariance GaussianMixture in format "
        "version %u (full covariance needs version %u)",
        in.name.c_str(),
        version,
        kVersionGMM);
    if (full) {
        // bounds the allocation below before anything is read into it
        check_full_covariance_size(gmm.d, gmm.k, ("input " + in.name).c_str());
    }
    gmm.is_trained = read_bool(in, "gmm.is_trained");
    gmm.variance_floor = read_finite<float>(in, "gmm.variance_floor");
    FAISS_THROW_IF_NOT_FMT(
        !gmm.is_trained || (gmm.d >= 1 && gmm.k >= 1),
        "corrupt input %s: trained GaussianMixture with d=%d k=%d",
        in.name.c_str(),
        gmm.d,
        gmm.k);
    uint64_t k = gmm.k, d = gmm.d;
    read_model_array(in, gmm.weights, k, gmm.is_trained, "gmm.weights");
    read_model_array(in, gmm.means, k * d, gmm.is_trained, "gmm.means");
    read_model_array(
        in,
        gmm.variances,
        k * uint64_t(gmm.variances_per_component()),
        gmm.is_trained,
        "gmm.variances");
    uint64_t nstats = read_bounded<uint64_t>(
        in, "gmm.iteration_stats.size", 0, kMaxIterationStats);
    constexpr size_t kStatBytes = 4 + 8 + 8 + 4 + 4 + 4;
    FAISS_THROW_IF_NOT_FMT(
        !in.size_known || nstats * kStatBytes <= in.remaining(),
        "corrupt or truncated input %s: %llu iteration stats but only "
        "%zu bytes left",
        in.name.c_str(),
        (unsigned long long)nstats,
        in.remaining());
    gmm.iteration_stats.resize(nstats);
    for (GmmIterationStats& s : gmm.iteration_stats) {
        s.iteration = in.read_value<int32_t>("gmm.iteration_stats.iteration");
        s.log_likelihood =
            in.read_value<double>("gmm.iteration_stats.log_likelihood");
        s.time_s = in.read_value<double>("gmm.iteration_stats.time_s");
        s.min_weight = in.read_value<float>("gmm.iteration_stats.min_weight");
        s.min_variance =
            in.read_value<float>("gmm.iteration_stats.min_variance");
        s.n_reseeded = in.read_value<int32_t>("gmm.iteration_stats.n_reseeded");
    }
    if (version >= kVersionGMM) {
        read_model_array(
            in,
            gmm.covariances,
            full ? k * d * d : 0,
            gmm.is_trained && full,
            "gmm.covariances");
    }
    end_payload(in, "GaussianMixture");
    if (full && gmm.covariances.size() == k * d * d && k * d > 0) {
        // the factors are derived: recomputed exactly as training left them
        try {
            gmm.update_precision_cholesky();
        } catch (const faiss::FaissException& e) {
            FAISS_THROW_FMT("corrupt input %s: %s", in.name.c_str(), e.what());
        }
    }
    if (gmm.is_trained) {
        gmm.check_consistency();
    }
    return gmm;
}

// ---- index headers ---------------------------------------------------------

void write_index_header(const faiss::Index* index, faiss::IOWriter* w) {
    write_value<int32_t>(w, index->d);
    write_value<int64_t>(w, index->ntotal);
    write_value<uint8_t>(w, index->is_trained);
    write_value<int32_t>(w, int32_t(index->metric_type));
    write_value<float>(w, index->metric_arg);
}

struct IndexHeader {
    int d;
    idx_t ntotal;
    bool is_trained;
    faiss::MetricType metric_type;
    float metric_arg;
};

IndexHeader read_index_header(CheckedReader& in) {
    IndexHeader h;
    h.d = read_bounded<int32_t>(in, "d", 1, kMaxDim);
    h.ntotal = read_bounded<int64_t>(in, "ntotal", 0, kMaxNtotal);
    h.is_trained = read_bool(in, "is_trained");
    // the metric values FAISS 1.7.3 defines: L2, inner product, 20..26
    int32_t metric = in.read_value<int32_t>("metric_type");
    FAISS_THROW_IF_NOT_FMT(
        metric == faiss::METRIC_L2 || metric == faiss::METRIC_INNER_PRODUCT ||
            (metric >= faiss::METRIC_L1 &&
             metric <= faiss::METRIC_JensenShannon),
        "corrupt input %s: field metric_type = %d is not a FAISS metric",
        in.name.c_str(),
        metric);
    h.metric_type = faiss::MetricType(metric);
    h.metric_arg = read_finite<float>(in, "metric_arg");
    return h;
}

void apply_index_header(const IndexHeader& h, faiss::Index* index) {
    index->d = h.d;
    index->ntotal = h.ntotal;
    index->is_trained = h.is_trained;
    index->metric_type = h.metric_type;
    index->metric_arg = h.metric_arg;
}

// ---- IndexIVFGMM -----------------------------------------------------------

void write_string(faiss::IOWriter* w, const std::string& text) {
    write_value<uint64_t>(w, text.size());
    write_bytes(w, text.data(), text.size());
}

std::string read_string(CheckedReader& in, const char* field) {
    const uint64_t n =
        read_bounded<uint64_t>(in, field, 0, kMaxParameterStringBytes);
    std::string text(n, '\0');
    in.read_exact(&text[0], n, field);
    return text;
}

/// Throws before anything is written when read_ivfgmm would reject the file.
void check_writable(const IndexIVFGMM& index) {
    FAISS_THROW_IF_NOT_FMT(
        index.d >= 1 && index.d <= kMaxDim && index.nlist >= 1 &&
            index.nlist <= kMaxNlist && index.quantizer && index.invlists &&
            index.codes_index,
        "write_index: IndexIVFGMM with d=%d, nlist=%zu (limits: d <= %lld, "
        "nlist <= %llu, quantizer, lists and codes present)",
        index.d,
        index.nlist,
        (long long)kMaxDim,
        (unsigned long long)kMaxNlist);
    FAISS_THROW_IF_NOT_FMT(
        index.metric_type == faiss::METRIC_L2,
        "write_index: IndexIVFGMM with metric %d (only L2 is valid)",
        int(index.metric_type));
    FAISS_THROW_IF_NOT_MSG(
        index.codes_index->quantizer == index.quantizer,
        "write_index: IndexIVFGMM whose codes_index does not share its "
        "quantizer (replaced behind the index)");
    FAISS_THROW_IF_NOT_FMT(
        index.code_size == index.codes_index->code_size &&
            index.code_size <= kMaxCodeSize,
        "write_index: IndexIVFGMM code_size=%zu (codes_index %zu, limit "
        "%zu)",
        index.code_size,
        index.codes_index->code_size,
        size_t(kMaxCodeSize));
    index.check_lists_in_sync("write_index");
    FAISS_THROW_IF_NOT_FMT(
        index.spill_records.width >= 0 &&
            uint64_t(index.spill_records.width) <= kMaxOtherListsWidth,
        "write_index: IndexIVFGMM spill record width %d",
        index.spill_records.width);
    // the same validation that reading applies
    index.build_params.check("write_index");
    index.search_defaults().check("write_index");
    FAISS_THROW_IF_NOT_FMT(
        index.gmm.iteration_stats.size() <= kMaxIterationStats,
        "write_index: the model has %zu iteration stats (limit %llu)",
        index.gmm.iteration_stats.size(),
        (unsigned long long)kMaxIterationStats);
}

void write_ivfgmm(const IndexIVFGMM& index, ChecksumWriter& cw) {
    check_writable(index);
    faiss::IOWriter* w = &cw;
    begin_payload(cw, kFourccIVFGMM, kVersionIVFGMM);
    write_index_header(&index, w);
    write_value<uint64_t>(w, index.nlist);
    write_string(w, format_build_parameters(index.build_params));
    write_string(w, format_search_parameters(index.search_defaults()));
    write_gmm_payload(index.gmm, cw);
    // The code: FAISS writes the code index (its parameters, its quantizer
    // holding the means, its own empty lists) into a blob with its own
    // checksum, verified before FAISS parses it.
    faiss::VectorIOWriter code_blob;
    faiss::write_index(index.codes_index, &code_blob);
    write_array(w, code_blob.data);
    write_value<uint64_t>(w, checksum_of(code_blob.data));
    // the lists: per list its size, ids, codes and spill records
    const SpillRecords& records = index.spill_records;
    const size_t width = size_t(records.width);
    write_value<uint64_t>(w, index.code_size);
    write_value<uint64_t>(w, width);
    for (size_t l = 0; l < index.nlist; l++) {
        const size_t n = index.invlists->list_size(l);
        write_value<uint64_t>(w, n);
        if (n == 0) {
            continue;
        }
        faiss::InvertedLists::ScopedIds ids(index.invlists, l);
        faiss::InvertedLists::ScopedCodes codes(index.invlists, l);
        write_bytes(w, ids.get(), n * sizeof(idx_t));
        write_bytes(w, codes.get(), n * index.code_size);
        write_bytes(w, records.records[l].data(), n * width * sizeof(int32_t));
    }
    write_value<uint64_t>(w, records.nentries);
    end_payload(cw);
}

/// The code index from its blob: checksum first, then FAISS parses it; an
/// L2 IndexIVF of the right shape that IndexIVFGMM can take over.
faiss::IndexIVF*
read_code_index(CheckedReader& in, const IndexHeader& header, uint64_t nlist) {
    faiss::VectorIOReader blob;
    blob.name = in.name + " (IndexIVFGMM code)";
    in.read_array(blob.data, in.read_value<uint64_t>("code size"), "code");
    const uint64_t stored = in.read_value<uint64_t>("code checksum");
    const uint64_t computed = checksum_of(blob.data);
    FAISS_THROW_IF_NOT_FMT(
        stored == computed,
        "corrupt input %s: checksum of the IndexIVFGMM code is 0x%016llx, "
        "its bytes give 0x%016llx",
        in.name.c_str(),
        (unsigned long long)stored,
        (unsigned long long)computed);
    std::unique_ptr<faiss::Index> read(call_faiss_reader(
        in.name, "IndexIVFGMM code", [&] { return faiss::read_index(&blob); }));
    auto* ivf = dynamic_cast<faiss::IndexIVF*>(read.get());
    FAISS_THROW_IF_NOT_FMT(
        ivf && ivf->d == header.d && ivf->nlist == nlist &&
            ivf->metric_type == faiss::METRIC_L2 && ivf->quantizer &&
            blob.rp == blob.data.size() &&
            (ivf->quantizer->ntotal == idx_t(nlist) ||
             (ivf->quantizer->ntotal == 0 && !header.is_trained)),
        "corrupt input %s: the IndexIVFGMM code is not an L2 IndexIVF with "
        "d=%d, nlist=%llu and a quantizer of nlist means",
        in.name.c_str(),
        header.d,
        (unsigned long long)nlist);
    read.release();
    return ivf;
}

IndexIVFGMM* read_ivfgmm(CheckedReader& in) {
    begin_payload(in, kFourccIVFGMM, "IndexIVFGMM", kVersionIVFGMM);
    IndexHeader header = read_index_header(in);
    FAISS_THROW_IF_NOT_FMT(
        header.metric_type == faiss::METRIC_L2,
        "corrupt input %s: IndexIVFGMM with metric_type %d (only L2)",
        in.name.c_str(),
        int(header.metric_type));
    const uint64_t nlist = read_bounded<uint64_t>(in, "nlist", 1, kMaxNlist);
    // every list stores at least its size: reject absurd nlist before
    // allocating nlist lists
    FAISS_THROW_IF_NOT_FMT(
        !in.size_known || nlist * sizeof(uint64_t) <= in.remaining(),
        "corrupt or truncated input %s: nlist = %llu but only %zu bytes "
        "left",
        in.name.c_str(),
        (unsigned long long)nlist,
        in.remaining());
    IVFGMMBuildParameters build;
    SearchParametersIVFGMM search;
    const std::string what = "corrupt input " + in.name;
    parse_build_parameters(
        read_string(in, "build parameters"), &build, what.c_str());
    parse_search_parameters(
        read_string(in, "search parameters"), &search, what.c_str());

    // The model comes first: its arrays (nlist * d means) were read from
    // the input, which bounds what the index allocates.
    GaussianMixture gmm = read_gmm_payload(in);
    FAISS_THROW_IF_NOT_FMT(
        gmm.is_trained || !header.is_trained,
        "corrupt input %s: IndexIVFGMM is trained but its model is not",
        in.name.c_str());
    FAISS_THROW_IF_NOT_FMT(
        gmm.d == header.d && uint64_t(gmm.k) == nlist,
        "corrupt input %s: model (d=%d, k=%d) does not match the index "
        "(d=%d, nlist=%llu)",
        in.name.c_str(),
        gmm.d,
        gmm.k,
        header.d,
        (unsigned long long)nlist);
    std::unique_ptr<IndexIVFGMM> index(
        new IndexIVFGMM(read_code_index(in, header, nlist), build));
    if (gmm.is_trained) {
        std::vector<float> means(size_t(nlist) * header.d);
        index->quantizer->reconstruct_n(0, idx_t(nlist), means.data());
        FAISS_THROW_IF_NOT_FMT(
            means == gmm.means,
            "corrupt input %s: the quantizer does not hold the model's means",
            in.name.c_str());
    }
    index->gmm = std::move(gmm);
    apply_index_header(header, index.get());
    FAISS_THROW_IF_NOT_FMT(
        !header.is_trained ||
            (index->gmm.is_trained && index->codes_index->is_trained),
        "corrupt input %s: IndexIVFGMM is trained but its code is not",
        in.name.c_str());
    FAISS_THROW_IF_NOT_FMT(
        header.is_trained || header.ntotal == 0,
        "corrupt input %s: untrained IndexIVFGMM with ntotal = %lld",
        in.name.c_str(),
        (long long)header.ntotal);

    const uint64_t code_size =
        read_bounded<uint64_t>(in, "code_size", 1, kMaxCodeSize);
    FAISS_THROW_IF_NOT_FMT(
        code_size == index->code_size,
        "corrupt input %s: field code_size = %llu, the code has %zu",
        in.name.c_str(),
        (unsigned long long)code_size,
        index->code_size);
    const uint64_t width = read_bounded<uint64_t>(
        in, "spill record width", 0, kMaxOtherListsWidth);
    SpillRecords& records = index->spill_records;
    records.reset(size_t(nlist), int(width));
    // the constructor made ArrayInvertedLists: read straight into them
    auto* lists = dynamic_cast<faiss::ArrayInvertedLists*>(index->invlists);
    FAISS_THROW_IF_NOT_MSG(
        lists, "read_index: IndexIVFGMM without ArrayInvertedLists");
    uint64_t total_entries = 0, canonical = 0;
    std::vector<idx_t> ids;
    std::vector<uint8_t> codes;
    for (uint64_t l = 0; l < nlist; l++) {
        const uint64_t n =
            read_bounded<uint64_t>(in, "list size", 0, uint64_t(kMaxNtotal));
        if (n == 0) {
            continue;
        }
        in.read_array(ids, n, "list ids");
        in.read_array(codes, n * code_size, "list codes");
        lists->add_entries(l, n, ids.data(), codes.data());
        std::vector<int32_t>& r = records.records[l];
        in.read_array(r, n * width, "spill records");
        // each record: list numbers other than l, then -1 padding
        for (size_t i = 0; i < r.size(); i++) {
            const int32_t o = r[i];
            const bool padded = i % width > 0 && r[i - 1] == -1;
            FAISS_THROW_IF_NOT_FMT(
                (o == -1 || (!padded && o >= 0 && uint64_t(o) < nlist &&
                             uint64_t(o) != l)),
                "corrupt input %s: list %llu, entry %zu has spill record "
                "value %d (nlist %llu)",
                in.name.c_str(),
                (unsigned long long)l,
                i / width,
                o,
                (unsigned long long)nlist);
        }
        for (uint64_t j = 0; j < n; j++) {
            canonical +=
                is_canonical_copy(l, r.data() + j * width, int(width)) ? 1 : 0;
        }
        total_entries += n;
    }
    records.nentries = in.read_value<uint64_t>("nentries");
    FAISS_THROW_IF_NOT_FMT(
        records.nentries == total_entries &&
            canonical == uint64_t(header.ntotal),
        "corrupt input %s: field nentries = %llu and ntotal = %lld, but the "
        "lists hold %llu entries of %llu vectors",
        in.name.c_str(),
        (unsigned long long)records.nentries,
        (long long)header.ntotal,
        (unsigned long long)total_entries,
        (unsigned long long)canonical);
    index->set_search_defaults(search);
    end_payload(in, "IndexIVFGMM");
    return index.release();
}

// ---- wrappers --------------------------------------------------------------

bool contains_ivfgmm(const faiss::Index* index) {
    if (!index) {
        return false;
    }
    if (dynamic_cast<const IndexIVFGMM*>(index)) {
        return true;
    }
    if (auto* pt = dynamic_cast<const faiss::IndexPreTransform*>(index)) {
        return contains_ivfgmm(pt->index);
    }
    if (auto* idmap = dynamic_cast<const faiss::IndexIDMap*>(index)) {
        return contains_ivfgmm(idmap->index);
    }
    if (auto* refine = dynamic_cast<const faiss::IndexRefine*>(index)) {
        return contains_ivfgmm(refine->base_index) ||
               contains_ivfgmm(refine->refine_index);
    }
    if (auto* ivf = dynamic_cast<const faiss::IndexIVF*>(index)) {
        return contains_ivfgmm(ivf->quantizer);
    }
    if (auto* threaded =
            dynamic_cast<const faiss::ThreadedIndex<faiss::Index>*>(index)) {
        for (int i = 0; i < threaded->count(); i++) {
            if (contains_ivfgmm(threaded->at(i))) {
                return true;
            }
        }
    }
    return false;
}

faiss::Index* read_index_checked(CheckedReader& in, int io_flags);
void write_index_checked(const faiss::Index* index, ChecksumWriter& w);

void write_pretransform(const faiss::IndexPreTransform& pt, ChecksumWriter& w) {
    begin_payload(w, kFourccPreTransform, kVersionWrapper);
    write_index_header(&pt, &w);
    write_value<uint32_t>(&w, uint32_t(pt.chain.size()));
    // Each transform is a blob with its own checksum, verified before FAISS
    // parses it: FAISS sizes its arrays from counts it reads.
    for (const faiss::VectorTransform* vt : pt.chain) {
        faiss::VectorIOWriter blob;
        faiss::write_VectorTransform(vt, &blob);
        write_array(&w, blob.data);
        write_value<uint64_t>(&w, checksum_of(blob.data));
    }
    write_index_checked(pt.index, w);
    end_payload(w);
}

faiss::Index* read_pretransform(CheckedReader& in, int io_flags) {
    begin_payload(
        in, kFourccPreTransform, "IndexPreTransform", kVersionWrapper);
    IndexHeader header = read_index_header(in);
    uint32_t nchain = read_bounded<uint32_t>(in, "chain size", 0, kMaxChain);
    std::vector<std::unique_ptr<faiss::VectorTransform>> chain;
    int d = header.d;
    for (uint32_t i = 0; i < nchain; i++) {
        faiss::VectorIOReader blob;
        blob.name = in.name + " (vector transform)";
        in.read_array(
            blob.data,
            in.read_value<uint64_t>("transform size"),
            "vector transform");
        uint64_t stored = in.read_value<uint64_t>("transform checksum");
        uint64_t computed = checksum_of(blob.data);
        FAISS_THROW_IF_NOT_FMT(
            stored == computed,
            "corrupt input %s: checksum of vector transform %u is 0x%016llx, "
            "its bytes give 0x%016llx",
            in.name.c_str(),
            i,
            (unsigned long long)stored,
            (unsigned long long)computed);
        chain.emplace_back(call_faiss_reader(in.name, "vector transform", [&] {
            return faiss::read_VectorTransform(&blob);
        }));
        FAISS_THROW_IF_NOT_FMT(
            blob.rp == blob.data.size(),
            "corrupt input %s: vector transform %u used %zu of its %zu bytes",
            in.name.c_str(),
            i,
            blob.rp,
            blob.data.size());
        FAISS_THROW_IF_NOT_FMT(
            chain.back()->d_in == d,
            "corrupt input %s: transform %u maps d_in=%d, expected %d",
            in.name.c_str(),
            i,
            chain.back()->d_in,
            d);
        d = chain.back()->d_out;
    }
    std::unique_ptr<faiss::Index> sub(read_index_checked(in, io_flags));
    FAISS_THROW_IF_NOT_FMT(
        sub->d == d && sub->ntotal == header.ntotal,
        "corrupt input %s: sub-index has d=%d ntotal=%lld, the "
        "IndexPreTransform expects d=%d ntotal=%lld",
        in.name.c_str(),
        sub->d,
        (long long)sub->ntotal,
        d,
        (long long)header.ntotal);
    end_payload(in, "IndexPreTransform");
    auto pt = std::make_unique<faiss::IndexPreTransform>(sub.release());
    pt->own_fields = true;
    while (!chain.empty()) {
        pt->prepend_transform(chain.back().release());
        chain.pop_back();
    }
    apply_index_header(header, pt.get());
    return pt.release();
}

void write_refine(const faiss::IndexRefine& refine, ChecksumWriter& w) {
    begin_payload(w, kFourccRefine, kVersionWrapper);
    write_index_header(&refine, &w);
    write_value<uint8_t>(
        &w, dynamic_cast<const faiss::IndexRefineFlat*>(&refine) ? 1 : 0);
    write_value<float>(&w, refine.k_factor);
    write_index_checked(refine.refine_index, w);
    write_index_checked(refine.base_index, w);
    end_payload(w);
}

faiss::Index* read_refine(CheckedReader& in, int io_flags) {
    begin_payload(in, kFourccRefine, "IndexRefine", kVersionWrapper);
    const IndexHeader header = read_index_header(in);
    const bool flat = read_bool(in, "refine kind");
    const float k_factor = in.read_value<float>("k_factor");
    FAISS_THROW_IF_NOT_FMT(
        std::isfinite(k_factor) && k_factor >= 1,
        "corrupt input %s: field k_factor = %g must be finite and >= 1",
        in.name.c_str(),
        k_factor);
    std::unique_ptr<faiss::Index> refine_index(
        read_index_checked(in, io_flags));
    std::unique_ptr<faiss::Index> base(read_index_checked(in, io_flags));
    for (const faiss::Index* sub : {refine_index.get(), base.get()}) {
        FAISS_THROW_IF_NOT_FMT(
            sub->d == header.d && sub->ntotal == header.ntotal,
            "corrupt input %s: sub-index has d=%d ntotal=%lld, the "
            "IndexRefine expects d=%d ntotal=%lld",
            in.name.c_str(),
            sub->d,
            (long long)sub->ntotal,
            header.d,
            (long long)header.ntotal);
    }
    FAISS_THROW_IF_NOT_FMT(
        !flat || dynamic_cast<const faiss::IndexFlat*>(refine_index.get()),
        "corrupt input %s: an IndexRefineFlat whose refinement index is a "
        "%s",
        in.name.c_str(),
        impl::class_name(*refine_index).c_str());
    end_payload(in, "IndexRefine");
    // the default constructors: the others insist on an empty base index
    std::unique_ptr<faiss::IndexRefine> refine(
        flat ? new faiss::IndexRefineFlat() : new faiss::IndexRefine());
    refine->base_index = base.release();
    refine->refine_index = refine_index.release();
    refine->own_fields = true;
    refine->own_refine_index = true;
    refine->k_factor = k_factor;
    apply_index_header(header, refine.get());
    return refine.release();
}

bool is_plugin_fourcc(uint32_t h) {
    return h == kFourccIVFGMM || h == kFourccPreTransform ||
           h == kFourccRefine || h == kFourccIDMapV1 || h == kFourccIDMap2V1 ||
           h == kFourccGMM;
}

faiss::Index* read_index_checked(CheckedReader& in, int io_flags) {
    uint32_t h = in.read_value<uint32_t>("fourcc");
    if (h == kFourccIVFGMM) {
        return read_ivfgmm(in);
    } else if (h == kFourccPreTransform) {
        return read_pretransform(in, io_flags);
    } else if (h == kFourccRefine) {
        return read_refine(in, io_flags);
    }
    FAISS_THROW_IF_NOT_FMT(
        h != kFourccIDMapV1 && h != kFourccIDMap2V1,
        "input %s: an IndexIDMap around an IndexIVFGMM written by faiss-gmm "
        "format 1, which this build does not read (rebuild the index)",
        in.name.c_str());
    FAISS_THROW_IF_NOT_FMT(
        h != kFourccGMM,
        "input %s holds a GaussianMixture, not an index (use read_gmm)",
        in.name.c_str());
    in.unread(&h, sizeof(h));
    return call_faiss_reader(
        in.name, "index", [&] { return faiss::read_index(&in, io_flags); });
}

void write_index_checked(const faiss::Index* index, ChecksumWriter& w) {
    FAISS_THROW_IF_NOT_MSG(index, "write_index: index is null");
    if (auto* gmm = dynamic_cast<const IndexIVFGMM*>(index)) {
        write_ivfgmm(*gmm, w);
    } else if (!contains_ivfgmm(index)) {
        faiss::write_index(index, &w);
    } else if (
        auto* pt = dynamic_cast<const faiss::IndexPreTransform*>(index)) {
        write_pretransform(*pt, w);
    } else if (auto* refine = dynamic_cast<const faiss::IndexRefine*>(index)) {
        write_refine(*refine, w);
    } else if (dynamic_cast<const faiss::IndexIDMap*>(index)) {
        FAISS_THROW_MSG(
            "write_index: an IndexIDMap around an IndexIVFGMM is not "
            "written: IndexIVFGMM stores ids itself (index_factory's IDMap "
            "token gives it without the wrapper) and faiss::IndexIDMap's "
            "remove_ids would mislabel its results");
    } else {
        FAISS_THROW_FMT(
            "write_index: cannot write a %s that contains an IndexIVFGMM "
            "(supported wrappers: IndexPreTransform, IndexRefine)",
            impl::class_name(*index).c_str());
    }
}

/// The directory part of a path ("." when it has none).
std::string directory_of(const std::string& path) {
    const size_t slash = path.rfind('/');
    if (slash == std::string::npos) {
        return ".";
    }
    return slash == 0 ? "/" : path.substr(0, slash);
}

/**
 * Writes a file so that a failure never leaves a truncated or silently
 * short file: a regular file (or a new one) is written to a temporary file
 * in the same directory, every write, the flush, fsync and close are
 * checked, then it is renamed over the target; any failure throws (naming
 * the file and the error) and leaves the target as it was. A target that
 * exists and is not a regular file (a device, a pipe) is written in place,
 * with the same checks.
 */
void write_file_safely(
    const char* fname,
    const char* who,
    const std::function<void(faiss::IOWriter*)>& write) {
    const std::string target = fname;
    struct stat st;
    const bool exists = ::stat(fname, &st) == 0;
    const bool in_place = exists && !S_ISREG(st.st_mode);
    std::string temp;
    FILE* f = nullptr;
    if (in_place) {
        f = fopen(fname, "wb");
    } else {
        temp = target + ".tmp.XXXXXX";
        const int fd = mkstemp(&temp[0]);
        if (fd >= 0) {
            f = fdopen(fd, "wb");
            if (!f) {
                ::close(fd);
            }
        }
        if (!f && !temp.empty()) {
            ::unlink(temp.c_str());
        }
    }
    FAISS_THROW_IF_NOT_FMT(
        f,
        "%s: cannot open %s for writing (%s)",
        who,
        in_place ? fname : (directory_of(target) + " (temporary file)").c_str(),
        strerror(errno));
    const auto fail = [&](const std::string& what, int err) {
        if (f) {
            fclose(f);
        }
        if (!temp.empty()) {
            ::unlink(temp.c_str());
        }
        FAISS_THROW_FMT(
            "%s: writing %s failed: %s (%s)",
            who,
            fname,
            what.c_str(),
            strerror(err));
    };
    try {
        faiss::FileIOWriter writer(f);
        writer.name = target;
        write(&writer);
    } catch (const faiss::FaissException& e) {
        fail(e.what(), errno);
    }
    if (fflush(f) != 0 || ferror(f)) {
        fail("flush", errno);
    }
    if (!in_place && ::fsync(::fileno(f)) != 0) {
        fail("fsync", errno);
    }
    const int closed = fclose(f);
    f = nullptr;
    if (closed != 0) {
        fail("close", errno);
    }
    if (!in_place && ::rename(temp.c_str(), fname) != 0) {
        fail("rename of the temporary file", errno);
    }
}

} // namespace

void write_index(const faiss::Index* index, faiss::IOWriter* writer) {
    FAISS_THROW_IF_NOT_MSG(writer, "write_index: writer is null");
    if (auto* checked = dynamic_cast<ChecksumWriter*>(writer)) {
        write_index_checked(index, *checked);
        return;
    }
    ChecksumWriter w(writer);
    write_index_checked(index, w);
}

void write_index(const faiss::Index* index, const char* fname) {
    FAISS_THROW_IF_NOT_MSG(fname, "write_index: file name is null");
    FAISS_THROW_IF_NOT_MSG(index, "write_index: index is null");
    write_file_safely(fname, "write_index", [index](faiss::IOWriter* w) {
        faiss_gmm::write_index(index, w);
    });
}

faiss::Index* read_index(faiss::IOReader* reader, int io_flags) {
    FAISS_THROW_IF_NOT_MSG(reader, "read_index: reader is null");
    if (auto* checked = dynamic_cast<CheckedReader*>(reader)) {
        return read_index_checked(*checked, io_flags);
    }
    CheckedReader in(reader);
    return read_index_checked(in, io_flags);
}

faiss::Index* read_index(const char* fname, int io_flags) {
    FAISS_THROW_IF_NOT_MSG(fname, "read_index: file name is null");
    uint32_t h = 0;
    {
        faiss::FileIOReader reader(fname);
        CheckedReader in(&reader);
        h = in.read_value<uint32_t>("fourcc");
        if (is_plugin_fourcc(h)) {
            in.unread(&h, sizeof(h));
            return read_index_checked(in, io_flags);
        }
    }
    // a FAISS file: let FAISS open it itself, so that io_flags that need
    // the file name (on-disk lists, mmap) keep working
    return call_faiss_reader(
        fname, "index", [&] { return faiss::read_index(fname, io_flags); });
}

void write_gmm(const GaussianMixture& gmm, faiss::IOWriter* writer) {
    FAISS_THROW_IF_NOT_MSG(writer, "write_gmm: writer is null");
    if (auto* checked = dynamic_cast<ChecksumWriter*>(writer)) {
        write_gmm_payload(gmm, *checked);
        return;
    }
    ChecksumWriter w(writer);
    write_gmm_payload(gmm, w);
}

void write_gmm(const GaussianMixture& gmm, const char* fname) {
    FAISS_THROW_IF_NOT_MSG(fname, "write_gmm: file name is null");
    write_file_safely(
        fname, "write_gmm", [&gmm](faiss::IOWriter* w) { write_gmm(gmm, w); });
}

GaussianMixture read_gmm(faiss::IOReader* reader) {
    FAISS_THROW_IF_NOT_MSG(reader, "read_gmm: reader is null");
    if (auto* checked = dynamic_cast<CheckedReader*>(reader)) {
        return read_gmm_payload(*checked);
    }
    CheckedReader in(reader);
    return read_gmm_payload(in);
}

GaussianMixture read_gmm(const char* fname) {
    FAISS_THROW_IF_NOT_MSG(fname, "read_gmm: file name is null");
    faiss::FileIOReader reader(fname);
    return read_gmm(&reader);
}

faiss::Index* clone_index(const faiss::Index* index) {
    FAISS_THROW_IF_NOT_MSG(index, "clone_index: index is null");
    if (!contains_ivfgmm(index)) {
        return faiss::clone_index(index);
    }
    faiss::VectorIOWriter writer;
    faiss_gmm::write_index(index, &writer);
    faiss::VectorIOReader reader;
    reader.data.swap(writer.data);
    return faiss_gmm::read_index(&reader);
}

} // namespace faiss_gmm
