import Foundation
import XCTest

@testable import CoppiceEngine
@testable import CoppiceSparsity
@testable import CoppiceTraining

final class DataTests: XCTestCase {
  var directory: URL!

  override func setUpWithError() throws {
    directory = FileManager.default.temporaryDirectory.appendingPathComponent(
      "coppice-idx-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
  }

  override func tearDownWithError() throws {
    try? FileManager.default.removeItem(at: directory)
  }

  func idxBytes(dims: [Int], payload: [UInt8], type: UInt8 = 8) -> [UInt8] {
    var out: [UInt8] = [0, 0, type, UInt8(dims.count)]
    for d in dims {
      out += [UInt8(d >> 24 & 255), UInt8(d >> 16 & 255), UInt8(d >> 8 & 255), UInt8(d & 255)]
    }
    return out + payload
  }

  @discardableResult
  func write(_ name: String, _ bytes: [UInt8], gzip: Bool = false) throws -> String {
    let url = directory.appendingPathComponent(name)
    try Data(bytes).write(to: url)
    if gzip {
      let p = Process()
      p.executableURL = URL(fileURLWithPath: "/bin/gzip")
      p.arguments = ["-f", url.path]
      try p.run()
      p.waitUntilExit()
      return url.path + ".gz"
    }
    return url.path
  }

  func testReadsPlainAndGzippedFiles() throws {
    let payload: [UInt8] = (0..<24).map { UInt8($0) }
    let plain = try write("a-idx3-ubyte", idxBytes(dims: [2, 3, 4], payload: payload))
    let zipped = try write("b-idx3-ubyte", idxBytes(dims: [2, 3, 4], payload: payload), gzip: true)
    for path in [plain, zipped] {
      let f = try IDXFile.read(path: path)
      XCTAssertEqual(f.dimensions, [2, 3, 4])
      XCTAssertEqual(f.bytes, payload)
    }
  }

  func assertFails(_ path: String, containing text: String, line: UInt = #line) {
    XCTAssertThrowsError(try IDXFile.read(path: path), line: line) { error in
      let message = "\(error)"
      XCTAssertTrue(message.contains(path), "message should name the file: \(message)", line: line)
      XCTAssertTrue(message.contains(text), "expected '\(text)' in: \(message)", line: line)
    }
  }

  /// Not regular files and decompression bombs end with a clear error, quickly and without
  /// exhausting memory (a FIFO used to block the reader forever, /dev/zero never ended and a
  /// 2 MB gzip bomb took 2.1 GB).
  func testSpecialFilesAndBombsAreRefused() throws {
    assertFails(directory.path, containing: "not a regular file")
    let fifo = directory.appendingPathComponent("fifo").path
    XCTAssertEqual(mkfifo(fifo, 0o600), 0)
    assertFails(fifo, containing: "not a regular file")
    XCTAssertThrowsError(try IDXFile.read(path: "/dev/zero")) { error in
      XCTAssertTrue("\(error)".contains("not a regular file"), "\(error)")
    }
    // 1 GiB + 1 MiB of zeros behind a valid header, gzipped to ~1 MB: refused at the limit.
    let bomb = directory.appendingPathComponent("bomb-idx1-ubyte.gz").path
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = [
      "-c",
      "{ printf '\\000\\000\\010\\001\\100\\100\\000\\000'; head -c \(IDXFile.maxBytes + (1 << 20)) /dev/zero; } | gzip -1 > '\(bomb)'",
    ]
    try p.run()
    p.waitUntilExit()
    assertFails(bomb, containing: "larger than the reader's limit of \(IDXFile.maxBytes) bytes")
  }

  func testClearErrorsForBadFiles() throws {
    assertFails(directory.appendingPathComponent("missing").path, containing: "cannot open")
    assertFails(try write("short", [0, 0]), containing: "shorter than the 4-byte header")
    assertFails(try write("magic", [1, 2, 8, 1, 0, 0, 0, 0]), containing: "magic")
    assertFails(
      try write("type", [0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0]), containing: "element type")
    assertFails(try write("header", [0, 0, 8, 3, 0, 0, 0, 2, 0]), containing: "truncated header")
    assertFails(
      try write("data", idxBytes(dims: [2, 3], payload: [1, 2, 3])), containing: "truncated data")
    assertFails(
      try write("trailing", idxBytes(dims: [1], payload: [1, 2])), containing: "trailing")
    // A gzip file cut in half.
    let zipped = try write(
      "cut-idx1-ubyte", idxBytes(dims: [4000], payload: (0..<4000).map { UInt8($0 % 7) }),
      gzip: true)
    let data = try Data(contentsOf: URL(fileURLWithPath: zipped))
    let cut = try write("cut.gz", Array(data.prefix(data.count / 2)))
    assertFails(cut, containing: "truncated")
  }

  func testFashionMNISTLoaderOnSmallFiles() throws {
    let images: [UInt8] = (0..<(3 * 4)).map { UInt8($0 * 20) }
    try write("train-images-idx3-ubyte", idxBytes(dims: [3, 2, 2], payload: images), gzip: true)
    try write("train-labels-idx1-ubyte", idxBytes(dims: [3], payload: [0, 9, 4]))
    let d = try FashionMNIST.load(directory: directory.path, split: "train", normalize: false)
    XCTAssertEqual(d.count, 3)
    XCTAssertEqual(d.sampleShape, [1, 2, 2])
    XCTAssertEqual(d.labels, [0, 9, 4])
    XCTAssertEqual(d.images[1], 20 / 255, accuracy: 1e-6)
    let limited = try FashionMNIST.load(directory: directory.path, split: "train", limit: 2)
    XCTAssertEqual(limited.count, 2)
    XCTAssertEqual(limited.images[0], (0 - FashionMNIST.mean) / FashionMNIST.std, accuracy: 1e-6)
    // Mismatched counts and bad labels are named.
    try write("t10k-images-idx3-ubyte", idxBytes(dims: [3, 2, 2], payload: images))
    try write("t10k-labels-idx1-ubyte", idxBytes(dims: [2], payload: [0, 12]))
    XCTAssertThrowsError(try FashionMNIST.load(directory: directory.path, split: "t10k")) {
      XCTAssertTrue("\($0)".contains("2 labels but 3 images"), "\($0)")
    }
    XCTAssertThrowsError(try FashionMNIST.load(directory: "/nonexistent/dir", split: "train")) {
      XCTAssertTrue("\($0)".contains("does not exist"), "\($0)")
    }
  }

  func testInMemoryDatasetValidation() {
    XCTAssertThrowsError(
      try Dataset(images: [0, 1, 2], labels: [0], sampleShape: [1, 2, 2], classes: 2))
    XCTAssertThrowsError(
      try Dataset(images: [0, 1, 2, 3], labels: [5], sampleShape: [1, 2, 2], classes: 2))
    XCTAssertThrowsError(
      try Dataset(images: [0, .nan, 2, 3], labels: [1], sampleShape: [1, 2, 2], classes: 2))
    XCTAssertNoThrow(
      try Dataset(images: [0, 1, 2, 3], labels: [1], sampleShape: [1, 2, 2], classes: 2))
  }

  func testAugmentationCropsAndFlipsWithinBounds() throws {
    let values = (0..<16).map { Float($0) }
    let d = try Dataset(images: values, labels: [0], sampleShape: [1, 4, 4], classes: 1)
    let batch = Tensor(shape: [1, 1, 4, 4])
    var rng = SeededGenerator(seed: 3)
    var sawChange = false
    for _ in 0..<20 {
      _ = d.fill(
        batch, indices: [0],
        augmentation: Augmentation(cropPadding: 1, horizontalFlip: true, padValue: -1),
        rng: &rng)
      for i in 0..<16 { XCTAssertTrue(batch[i] == -1 || values.contains(batch[i])) }
      if batch.array != values { sawChange = true }
    }
    XCTAssertTrue(sawChange)
  }
}
