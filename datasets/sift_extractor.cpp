#include <datasets/sift_extractor.h>

#include <cmath>

#include <opencv2/core.hpp>
#include <opencv2/features2d.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <faiss/impl/FaissAssert.h>

namespace faiss_gmm {
namespace datasets {

void SiftParameters::check() const {
    FAISS_THROW_IF_NOT_FMT(
        nfeatures >= 0, "SiftParameters: nfeatures=%d < 0", nfeatures);
    FAISS_THROW_IF_NOT_FMT(
        n_octave_layers >= 1,
        "SiftParameters: n_octave_layers=%d < 1",
        n_octave_layers);
    FAISS_THROW_IF_NOT_FMT(
        contrast_threshold >= 0,
        "SiftParameters: contrast_threshold=%g < 0",
        contrast_threshold);
    FAISS_THROW_IF_NOT_FMT(
        edge_threshold > 0,
        "SiftParameters: edge_threshold=%g must be > 0",
        edge_threshold);
    FAISS_THROW_IF_NOT_FMT(
        sigma > 0, "SiftParameters: sigma=%g must be > 0", sigma);
    FAISS_THROW_IF_NOT_FMT(
        max_side >= 16, "SiftParameters: max_side=%d < 16", max_side);
}

ImageDescriptors
extract_sift(const std::string& path, const SiftParameters& params) {
    params.check();
    cv::Mat image = cv::imread(path, cv::IMREAD_GRAYSCALE);
    FAISS_THROW_IF_NOT_FMT(
        !image.empty(), "extract_sift: OpenCV cannot decode %s", path.c_str());
    ImageDescriptors out;
    out.width = image.cols;
    out.height = image.rows;
    const int longer = std::max(image.cols, image.rows);
    if (longer > params.max_side) {
        const double scale = double(params.max_side) / longer;
        const cv::Size size(
            int(std::lround(image.cols * scale)),
            int(std::lround(image.rows * scale)));
        cv::Mat shrunk;
        cv::resize(image, shrunk, size, 0, 0, cv::INTER_AREA);
        image = shrunk;
    }
    out.proc_width = image.cols;
    out.proc_height = image.rows;

    cv::Ptr<cv::SIFT> sift = cv::SIFT::create(
        params.nfeatures,
        params.n_octave_layers,
        params.contrast_threshold,
        params.edge_threshold,
        params.sigma);
    std::vector<cv::KeyPoint> keypoints;
    cv::Mat descriptors;
    sift->detectAndCompute(image, cv::noArray(), keypoints, descriptors);
    if (descriptors.empty()) {
        return out;
    }
    FAISS_THROW_IF_NOT_FMT(
        descriptors.cols == kSiftDim && descriptors.type() == CV_32F,
        "extract_sift: %s: OpenCV returned %d-column descriptors of type "
        "%d, expected %d float columns",
        path.c_str(),
        descriptors.cols,
        descriptors.type(),
        kSiftDim);
    out.n = descriptors.rows;
    out.rows.resize(size_t(out.n) * kSiftDim);
    for (int i = 0; i < descriptors.rows; i++) {
        const float* row = descriptors.ptr<float>(i);
        for (int j = 0; j < kSiftDim; j++) {
            const float v = row[j];
            FAISS_THROW_IF_NOT_FMT(
                v >= 0 && v <= 255 && v == std::floor(v),
                "extract_sift: %s: descriptor %d value %d is %g, not an "
                "integer in 0..255",
                path.c_str(),
                i,
                j,
                v);
            out.rows[size_t(i) * kSiftDim + j] = uint8_t(v);
        }
    }
    return out;
}

std::string opencv_version() {
    return CV_VERSION;
}

} // namespace datasets
} // namespace faiss_gmm
