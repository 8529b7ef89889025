import CoppiceSparsity

/// An in-memory labelled image dataset: samples of a fixed shape (e.g. [1, 28, 28]) stored
/// contiguously as float32, labels as Int32 in 0..<classes.
public final class Dataset {
  public let sampleShape: [Int]
  public let count: Int
  public let classes: Int
  public private(set) var images: [Float]
  public let labels: [Int32]

  public var sampleSize: Int { sampleShape.reduce(1, *) }

  /// A dataset from caller-provided arrays (copied). Throws when sizes or labels disagree.
  public init(images: [Float], labels: [Int32], sampleShape: [Int], classes: Int) throws {
    let size = sampleShape.reduce(1, *)
    guard !sampleShape.isEmpty, size > 0 else {
      throw CoppiceError.invalidArgument("sample shape \(sampleShape) is empty")
    }
    guard images.count == labels.count * size else {
      throw CoppiceError.invalidArgument(
        "\(images.count) image values for \(labels.count) labels of shape \(sampleShape)")
    }
    guard classes > 0 else { throw CoppiceError.invalidArgument("classes must be positive") }
    if let bad = labels.first(where: { $0 < 0 || Int($0) >= classes }) {
      throw CoppiceError.invalidArgument("label \(bad) outside 0..<\(classes)")
    }
    guard !images.contains(where: { !$0.isFinite }) else {
      throw CoppiceError.invalidArgument("images contain NaN or infinity")
    }
    self.images = images
    self.labels = labels
    self.sampleShape = sampleShape
    self.count = labels.count
    self.classes = classes
  }

  /// The first `n` samples (or all when n is nil or larger).
  public func prefix(_ n: Int?) -> Dataset {
    guard let n, n < count else { return self }
    let m = max(0, n)
    return try! Dataset(
      images: Array(images[0..<(m * sampleSize)]), labels: Array(labels[0..<m]),
      sampleShape: sampleShape, classes: classes)
  }

  /// x ← (x − mean) / std for every value.
  public func normalize(mean: Float, std: Float) {
    let inv = 1 / std
    for i in images.indices { images[i] = (images[i] - mean) * inv }
  }

  /// Copies the samples at `indices` into `batch` ([k] + sampleShape) and returns their labels.
  public func fill(
    _ batch: Tensor, indices: ArraySlice<Int>, augmentation: Augmentation? = nil,
    rng: inout SeededGenerator
  ) -> [Int32] {
    let size = sampleSize
    var out: [Int32] = []
    out.reserveCapacity(indices.count)
    images.withUnsafeBufferPointer { src in
      for (k, i) in indices.enumerated() {
        let dst = batch.data + k * size
        if let augmentation {
          augmentation.apply(
            source: src.baseAddress! + i * size, destination: dst, shape: sampleShape, rng: &rng)
        } else {
          dst.update(from: src.baseAddress! + i * size, count: size)
        }
        out.append(labels[i])
      }
    }
    return out
  }
}

/// Random-crop (after zero padding) and horizontal-flip augmentation for [C, H, W] samples.
public struct Augmentation: Sendable, Equatable, Codable {
  public var cropPadding: Int
  public var horizontalFlip: Bool
  /// Value used for the padded border (the normalised zero pixel, usually).
  public var padValue: Float

  public init(cropPadding: Int = 0, horizontalFlip: Bool = false, padValue: Float = 0) {
    self.cropPadding = cropPadding
    self.horizontalFlip = horizontalFlip
    self.padValue = padValue
  }

  func apply(
    source: UnsafePointer<Float>, destination: UnsafeMutablePointer<Float>, shape: [Int],
    rng: inout SeededGenerator
  ) {
    let (c, h, w) = (shape[0], shape[1], shape[2])
    let p = cropPadding
    let dy = p > 0 ? Int(rng.next() % UInt64(2 * p + 1)) - p : 0
    let dx = p > 0 ? Int(rng.next() % UInt64(2 * p + 1)) - p : 0
    let flip = horizontalFlip && rng.next() & 1 == 1
    for ch in 0..<c {
      for y in 0..<h {
        let sy = y + dy
        for x in 0..<w {
          let xx = flip ? w - 1 - x : x
          let sx = xx + dx
          let inside = sy >= 0 && sy < h && sx >= 0 && sx < w
          destination[(ch * h + y) * w + x] = inside ? source[(ch * h + sy) * w + sx] : padValue
        }
      }
    }
  }
}
