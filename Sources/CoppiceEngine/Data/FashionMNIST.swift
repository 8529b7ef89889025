import CoppiceSparsity
import Foundation

/// Fashion-MNIST (or MNIST) from a directory of IDX files, gzipped or not.
public enum FashionMNIST {
  /// Where Debian's `dataset-fashion-mnist` package puts the files.
  public static let defaultDirectory = "/usr/share/datasets/fashion-mnist"
  public static let mean: Float = 0.2860
  public static let std: Float = 0.3530
  public static let classNames = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
    "Ankle boot",
  ]

  /// Loads `train` or `t10k` images and labels, scaled to [0, 1] and, when `normalize` is set,
  /// standardised with Fashion-MNIST's mean and std.
  public static func load(
    directory: String = defaultDirectory, split: String, limit: Int? = nil, normalize: Bool = true
  ) throws -> Dataset {
    let imagesPath = try locate(directory: directory, stem: "\(split)-images-idx3-ubyte")
    let labelsPath = try locate(directory: directory, stem: "\(split)-labels-idx1-ubyte")
    let images = try IDXFile.read(path: imagesPath)
    let labels = try IDXFile.read(path: labelsPath)
    guard images.dimensions.count == 3 else {
      throw CoppiceError.invalidFile(
        path: imagesPath,
        reason: "expected 3 dimensions (count, rows, columns), got \(images.dimensions)")
    }
    guard labels.dimensions.count == 1 else {
      throw CoppiceError.invalidFile(
        path: labelsPath, reason: "expected 1 dimension (count), got \(labels.dimensions)")
    }
    guard images.dimensions[0] == labels.dimensions[0] else {
      throw CoppiceError.invalidFile(
        path: labelsPath,
        reason: "\(labels.dimensions[0]) labels but \(images.dimensions[0]) images in \(imagesPath)"
      )
    }
    if let bad = labels.bytes.first(where: { $0 > 9 }) {
      throw CoppiceError.invalidFile(path: labelsPath, reason: "label \(bad) is not in 0...9")
    }
    let total = images.dimensions[0]
    let n = min(total, max(0, limit ?? total))
    let (rows, cols) = (images.dimensions[1], images.dimensions[2])
    let size = rows * cols
    var pixels = [Float](repeating: 0, count: n * size)
    let scale: Float = 1 / 255
    for i in 0..<(n * size) {
      var v = Float(images.bytes[i]) * scale
      if normalize { v = (v - mean) / std }
      pixels[i] = v
    }
    let y = labels.bytes[0..<n].map { Int32($0) }
    return try Dataset(images: pixels, labels: y, sampleShape: [1, rows, cols], classes: 10)
  }

  /// Finds `<stem>.gz` or `<stem>` in the directory, with a clear error when neither exists.
  static func locate(directory: String, stem: String) throws -> String {
    let fm = FileManager.default
    var isDir: ObjCBool = false
    guard fm.fileExists(atPath: directory, isDirectory: &isDir), isDir.boolValue else {
      throw CoppiceError.io(
        "dataset directory \(directory) does not exist (install dataset-fashion-mnist or pass --data-dir)"
      )
    }
    for name in ["\(stem).gz", stem] {
      let path = (directory as NSString).appendingPathComponent(name)
      if fm.fileExists(atPath: path) { return path }
    }
    throw CoppiceError.io("\(directory): missing \(stem).gz (or \(stem))")
  }
}
