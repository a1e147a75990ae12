/**
 * SIFT descriptors of one image with OpenCV (cv::SIFT, DoG detector + SIFT
 * descriptor), as 128-byte rows: the descriptor of data sets like
 * ANN_SIFT1M. Needs OpenCV (core, imgproc, imgcodecs, features2d >= 4.4);
 * built only when CMake finds it.
 */

#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace faiss_gmm {
namespace datasets {

/// cv::SIFT::create arguments and the image preprocessing. The defaults are
/// the recipe of sift-debian-a (its manifest.json): OpenCV's defaults except
/// contrastThreshold 0.01 instead of 0.04 (about 2.5x more keypoints per
/// photo), grey-scale decoding, images larger than 4096 pixels shrunk.
struct SiftParameters {
    /// Keep only the n best keypoints; 0 keeps all (OpenCV's default).
    int nfeatures = 0;
    /// Layers per octave of the DoG pyramid (OpenCV's default 3).
    int n_octave_layers = 3;
    /// DoG contrast threshold, divided by n_octave_layers inside OpenCV
    /// (OpenCV's default is 0.04; the recipe uses 0.01).
    double contrast_threshold = 0.01;
    /// Edge-response threshold (OpenCV's default 10).
    double edge_threshold = 10;
    /// Gaussian sigma of octave 0 (OpenCV's default 1.6).
    double sigma = 1.6;
    /// Images whose longer side exceeds this many pixels are shrunk to it
    /// (cv::resize, INTER_AREA) before detection; never enlarged.
    int max_side = 4096;

    /// Throws naming the first invalid field.
    void check() const;
};

/// The descriptors of one image and its sizes.
struct ImageDescriptors {
    /// Width and height of the decoded image.
    int width = 0, height = 0;
    /// Width and height after shrinking to max_side (the image SIFT saw).
    int proc_width = 0, proc_height = 0;
    /// n x 128 descriptor values, row-major, in keypoint order.
    std::vector<uint8_t> rows;
    /// Number of descriptors (rows.size() / 128).
    int64_t n = 0;
};

/// Dimension of a SIFT descriptor.
constexpr int kSiftDim = 128;

/// Decodes path with cv::imread(IMREAD_GRAYSCALE) (EXIF orientation applied,
/// as OpenCV does), shrinks it when needed and runs
/// cv::SIFT::detectAndCompute. OpenCV's float descriptor values are
/// integers in 0..255 (checked) and are stored as bytes. Throws naming the
/// file when it cannot be decoded.
ImageDescriptors
extract_sift(const std::string& path, const SiftParameters& params = {});

/// The OpenCV version this was built with (CV_VERSION, e.g. "4.6.0").
std::string opencv_version();

} // namespace datasets
} // namespace faiss_gmm
