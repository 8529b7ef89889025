// A small reader for the gzipped Fashion-MNIST IDX files, shared by the C++ examples.
// Images are normalised like the engine's loader: (pixel / 255 - 0.2860) / 0.3530.
#ifndef COPPICE_EXAMPLES_FASHION_MNIST_HPP
#define COPPICE_EXAMPLES_FASHION_MNIST_HPP

#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

namespace fashion_mnist {

constexpr int height = 28, width = 28, pixels = height * width, classes = 10;

struct Split {
  std::vector<float> images;    // count × 784, normalised
  std::vector<int32_t> labels;  // count, in [0, 10)
  int64_t size() const { return static_cast<int64_t>(labels.size()); }
};

/// The data directory: $COPPICE_DATA, else the Debian package's.
inline std::string directory() {
  const char* dir = std::getenv("COPPICE_DATA");
  return dir != nullptr ? dir : "/usr/share/datasets/fashion-mnist";
}

namespace detail {
inline std::vector<unsigned char> read(const std::string& path, int header, int64_t item_size,
                                       int64_t& count) {
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) throw std::runtime_error("cannot open " + path);
  unsigned char head[16];
  if (gzread(file, head, static_cast<unsigned>(header)) != header) {
    gzclose(file);
    throw std::runtime_error(path + ": truncated header");
  }
  int64_t available = (int64_t{head[4]} << 24) | (int64_t{head[5]} << 16) |
                      (int64_t{head[6]} << 8) | int64_t{head[7]};
  if (count <= 0 || count > available) count = available;
  std::vector<unsigned char> data(static_cast<size_t>(count * item_size));
  int read = gzread(file, data.data(), static_cast<unsigned>(data.size()));
  gzclose(file);
  if (read != static_cast<int>(data.size())) throw std::runtime_error(path + ": truncated");
  return data;
}
}  // namespace detail

/// The first `limit` samples (<= 0: all) of split "train" or "t10k".
inline Split load(const std::string& split, int64_t limit) {
  const std::string base = directory() + "/" + split;
  int64_t count = limit;
  auto raw = detail::read(base + "-images-idx3-ubyte.gz", 16, pixels, count);
  auto labels = detail::read(base + "-labels-idx1-ubyte.gz", 8, 1, count);
  Split out;
  out.images.reserve(raw.size());
  for (unsigned char p : raw)
    out.images.push_back((static_cast<float>(p) / 255.0f - 0.2860f) / 0.3530f);
  out.labels.assign(labels.begin(), labels.end());
  return out;
}

}  // namespace fashion_mnist

#endif
