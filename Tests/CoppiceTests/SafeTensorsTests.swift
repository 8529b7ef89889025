import Foundation
import XCTest

@testable import CoppiceEngine
@testable import CoppiceSparsity
@testable import CoppiceTraining

final class SafeTensorsTests: XCTestCase {
  func temporaryPath(_ name: String) -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent(
      "coppice-\(UUID().uuidString)-\(name)"
    ).path
  }

  func testModelRoundTripAndFormat() throws {
    let a = ReferenceModel.cnn.build(seed: 1)
    let b = ReferenceModel.cnn.build(seed: 2)
    let path = temporaryPath("cnn.safetensors")
    defer { try? FileManager.default.removeItem(atPath: path) }
    try a.save(path: path)
    try b.load(path: path)
    for (p, q) in zip(a.parameters, b.parameters) { XCTAssertEqual(p.value.array, q.value.array) }
    // The format: 8-byte little-endian header length, a JSON header, then the data.
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    let n = data.prefix(8).withUnsafeBytes {
      Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)))
    }
    let header =
      try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) as! [String: Any]
    let fc2 = header["fc2.weight"] as! [String: Any]
    XCTAssertEqual(fc2["dtype"] as? String, "F32")
    XCTAssertEqual(fc2["shape"] as? [Int], [10, 256])
    XCTAssertEqual((header["__metadata__"] as? [String: String])?["model"], "cnn")
  }

  func testCorruptedFilesGiveClearErrorsAndLeaveTheModelIntact() throws {
    let model = ReferenceModel.mlp.build(seed: 1)
    let path = temporaryPath("mlp.safetensors")
    defer { try? FileManager.default.removeItem(atPath: path) }
    try model.save(path: path)
    let good = try Data(contentsOf: URL(fileURLWithPath: path))
    let target = ReferenceModel.mlp.build(seed: 5)
    let before = target.parameters.map(\.value.array)
    let n = good.prefix(8).withUnsafeBytes {
      Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)))
    }
    var cases: [(String, Data)] = [
      ("empty", Data()),
      ("header cut", good.prefix(8 + n / 2)),
      ("data cut", good.prefix(good.count - 100)),
      ("huge length", Data([255, 255, 255, 255, 255, 255, 255, 127]) + good.dropFirst(8)),
    ]
    var flipped = good
    flipped[9] = 0x7B ^ 0xFF
    cases.append(("bad JSON", flipped))
    for (what, bytes) in cases {
      try bytes.write(to: URL(fileURLWithPath: path))
      XCTAssertThrowsError(try target.load(path: path), what) { error in
        XCTAssertTrue("\(error)".contains(path), "\(what): \(error)")
      }
    }
    XCTAssertEqual(target.parameters.map(\.value.array), before)
    // A file of another model is rejected by its model name, and a foreign safetensors file
    // (no Coppice metadata) by tensor name and shape.
    let cnn = ReferenceModel.cnn.build(seed: 0)
    try cnn.save(path: path)
    XCTAssertThrowsError(try target.load(path: path)) {
      XCTAssertTrue("\($0)".contains("holds model 'cnn'"), "\($0)")
    }
    let foreign = try SafeTensors.encode(
      cnn.parameters.map {
        SafeTensors.Entry(
          name: $0.name, shape: $0.shape, floats: UnsafeBufferPointer($0.value.buffer))
      })
    try foreign.write(to: URL(fileURLWithPath: path))
    XCTAssertThrowsError(try target.load(path: path)) {
      XCTAssertTrue("\($0)".contains("fc1.weight"), "\($0)")
    }
  }
}
