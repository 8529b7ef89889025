import Foundation
import XCTest

@testable import CoppiceEngine
@testable import CoppiceSparsity
@testable import CoppiceTraining

/// Corrupted and malformed inputs for the two file readers, SafeTensors.decode and
/// IDXFile.parse: every one must throw CoppiceError.invalidFile with a reason naming the
/// problem, or (for byte flips that still make a well-formed file) decode consistently. The
/// libFuzzer targets in fuzz/ (`make fuzz`) explore the same property at random.
final class FileCorruptionTests: XCTestCase {
  // MARK: - safetensors

  typealias Entry = SafeTensors.Entry

  static let path = "t.safetensors"

  /// Several tensors of each dtype (one of them empty, one a scalar), with metadata.
  static let entries: [Entry] = {
    func entry(_ name: String, _ dtype: SafeTensors.DType, _ shape: [Int], _ seed: Int) -> Entry {
      let n = shape.reduce(1, *) * dtype.size
      let bytes = Data((0..<n).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ seed &* 11 &+ 5) })
      return Entry(name: name, dtype: dtype, shape: shape, bytes: bytes)
    }
    return [
      entry("fc.weight", .f32, [2, 3], 1), entry("fc.bias", .f32, [3], 2),
      entry("scale", .f32, [], 3), entry("idx", .i32, [5], 4), entry("ptr", .i32, [2, 2], 5),
      entry("rows", .u16, [3], 6), entry("cols", .u16, [1, 2, 2], 7),
      entry("fc.weight.mask", .u8, [2, 3], 8), entry("flags", .u8, [7], 9),
      entry("empty", .u8, [0, 4], 10),
    ]
  }()

  static let metadata = ["format": "coppice", "model": "test", "note": "{\"not\": [\"json\"]}"]

  static let valid: Data = try! SafeTensors.encode(entries, metadata: metadata)

  /// The header length of `valid`.
  static var headerLength: Int {
    valid.prefix(8).withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) }
  }

  /// A file from a header given as a JSON-compatible value (or raw text) and a data section.
  func file(_ header: Any, data: Data = Data(), length: UInt64? = nil) -> Data {
    var json: Data
    if let text = header as? String {
      json = Data(text.utf8)
    } else {
      json = try! JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
    }
    while json.count % 8 != 0 { json.append(0x20) }
    var n = (length ?? UInt64(json.count)).littleEndian
    return Data(bytes: &n, count: 8) + json + data
  }

  /// Asserts that decoding `data` throws invalidFile naming `path`, with a reason containing
  /// every fragment; returns the reason.
  @discardableResult
  func assertInvalid(
    _ data: Data, _ fragments: [String], _ what: String, file: StaticString = #filePath,
    line: UInt = #line
  ) -> String? {
    assertRejected(
      path: Self.path, fragments, what, file: file, line: line,
      { _ = try SafeTensors.decode(data, path: Self.path) })
  }

  /// Runs `read`, which must throw `invalidFile` for `path` with a reason containing every
  /// fragment; returns the reason.
  func assertRejected(
    path expected: String, _ fragments: [String], _ what: String, file: StaticString,
    line: UInt, _ read: () throws -> Void
  ) -> String? {
    do {
      try read()
      XCTFail("\(what): read without error", file: file, line: line)
    } catch CoppiceError.invalidFile(let path, let reason) {
      XCTAssertEqual(path, expected, what, file: file, line: line)
      XCTAssertFalse(reason.isEmpty, "\(what): empty reason", file: file, line: line)
      for f in fragments {
        XCTAssertTrue(
          reason.contains(f), "\(what): '\(reason)' should contain '\(f)'", file: file, line: line)
      }
      return reason
    } catch {
      XCTFail("\(what): unexpected error \(error)", file: file, line: line)
    }
    return nil
  }

  /// A successful decode must describe exactly the file: every tensor's bytes match its shape
  /// and dtype, and together they use the whole data section.
  func assertConsistent(
    _ decoded: (entries: [String: Entry], metadata: [String: String]), fileSize: Int,
    headerLength: Int, _ what: String, file: StaticString = #filePath, line: UInt = #line
  ) {
    var total = 0
    for (name, e) in decoded.entries {
      XCTAssertEqual(e.name, name, what, file: file, line: line)
      XCTAssertEqual(
        e.bytes.count, e.shape.reduce(1, *) * e.dtype.size, "\(what): \(name)", file: file,
        line: line)
      total += e.bytes.count
    }
    XCTAssertEqual(8 + headerLength + total, fileSize, what, file: file, line: line)
  }

  func testValidFileRoundTrips() throws {
    let (entries, metadata) = try SafeTensors.decode(Self.valid, path: Self.path)
    XCTAssertEqual(metadata, Self.metadata)
    XCTAssertEqual(entries.count, Self.entries.count)
    for e in Self.entries {
      let d = try XCTUnwrap(entries[e.name], e.name)
      XCTAssertEqual(d.dtype, e.dtype, e.name)
      XCTAssertEqual(d.shape, e.shape, e.name)
      XCTAssertEqual(d.bytes, e.bytes, e.name)
    }
    assertConsistent(
      (entries, metadata), fileSize: Self.valid.count, headerLength: Self.headerLength, "valid")
    // A slice of a larger buffer (startIndex != 0) decodes the same.
    let slice = (Data([0xAB, 0xCD, 0xEF]) + Self.valid).dropFirst(3)
    XCTAssertNotEqual(slice.startIndex, 0)
    let (again, _) = try SafeTensors.decode(slice, path: Self.path)
    XCTAssertEqual(again["idx"]?.bytes, entries["idx"]?.bytes)
    XCTAssertEqual(again.count, entries.count)
  }

  /// Every proper prefix of a valid file (inside the length, the header, and at and between
  /// each tensor's data start and end) is reported as truncated, never decoded to less data.
  func testTruncatedAtEveryByteIsReported() throws {
    let valid = Self.valid
    let n = Self.headerLength
    let headerEnd = 8 + n
    let header = try XCTUnwrap(
      JSONSerialization.jsonObject(with: valid.subdata(in: 8..<headerEnd)) as? [String: Any])
    // Every section boundary, so that a failure there is reported by name.
    var boundaries: [Int: String] = [8: "end of the length", headerEnd: "end of the header"]
    for (name, value) in header where name != "__metadata__" {
      let offsets = try XCTUnwrap((value as? [String: Any])?["data_offsets"] as? [Int])
      boundaries[headerEnd + offsets[0], default: ""] += " start of \(name)"
      boundaries[headerEnd + offsets[1], default: ""] += " end of \(name)"
    }
    XCTAssertEqual(boundaries.keys.max(), valid.count)
    for k in 0..<valid.count {
      let what = "prefix of \(k) bytes (\(boundaries[k] ?? "inside a section"))"
      let reason = assertInvalid(valid.prefix(k), ["truncated"], what)
      if k >= headerEnd, let reason {
        // In the data: the first tensor cut short is named, with its offsets.
        XCTAssertTrue(reason.contains("data offsets"), "\(what): \(reason)")
      }
    }
    // And the whole file still decodes.
    XCTAssertNoThrow(try SafeTensors.decode(valid, path: Self.path))
  }

  /// Each byte of the header XORed with a few masks: the decoder throws invalidFile or, when
  /// the result is still a well-formed file, decodes it consistently.
  func testFlippedHeaderBytesThrowOrDecodeConsistently() {
    let valid = Self.valid
    let n = Self.headerLength
    var decoded = 0
    var thrown = 0
    for position in 8..<(8 + n) {
      for mask: UInt8 in [0x01, 0x02, 0x20, 0x80, 0xFF] {
        var bytes = valid
        bytes[position] ^= mask
        let what = "byte \(position) ^ 0x\(String(mask, radix: 16))"
        do {
          let result = try SafeTensors.decode(bytes, path: Self.path)
          assertConsistent(result, fileSize: bytes.count, headerLength: n, what)
          decoded += 1
        } catch CoppiceError.invalidFile(let path, let reason) {
          XCTAssertEqual(path, Self.path, what)
          XCTAssertFalse(reason.isEmpty, what)
          thrown += 1
        } catch {
          XCTFail("\(what): unexpected error \(error)")
        }
      }
    }
    XCTAssertEqual(decoded + thrown, 5 * n)
    XCTAssertGreaterThan(thrown, 0)
  }

  /// Every possible value of each byte of the 8-byte header length.
  func testCorruptedHeaderLength() {
    let n = Self.headerLength
    for position in 0..<8 {
      for value in 0...255 {
        var bytes = Self.valid
        bytes[position] = UInt8(value)
        guard bytes != Self.valid else { continue }
        assertInvalid(bytes, [], "length byte \(position) = \(value)")
      }
    }
    // Specific lengths and their messages.
    func withLength(_ length: UInt64) -> Data {
      var l = length.littleEndian
      return Data(bytes: &l, count: 8) + Self.valid.dropFirst(8)
    }
    let size = UInt64(Self.valid.count)
    assertInvalid(withLength(0), ["header length 0", "too small"], "length 0")
    assertInvalid(withLength(1), ["too small"], "length 1")
    assertInvalid(withLength(size - 7), ["truncated", "header length"], "length past the end")
    assertInvalid(withLength(UInt64(n + 1)), [], "length one too long")
    assertInvalid(withLength(.max), ["truncated"], "length 2^64 - 1")
    assertInvalid(withLength(UInt64(Int.max)), ["truncated"], "length Int.max")
    assertInvalid(withLength(1 << 63), ["truncated"], "length 2^63")
    // One byte short ends the header inside its space padding: still valid JSON, but the data
    // section would start one byte early. The tiling check catches it (never shifted data).
    assertInvalid(withLength(UInt64(n - 1)), ["trailing"], "length one too short")
    assertInvalid(Data(count: 8), ["header length 0"], "8 zero bytes")
  }

  func testMalformedHeaders() {
    let four = Data([1, 2, 3, 4])
    func tensor(_ dtype: Any = "U8", _ shape: Any = [4], _ offsets: Any = [0, 4]) -> [String: Any] {
      ["dtype": dtype, "shape": shape, "data_offsets": offsets]
    }
    // The header itself.
    assertInvalid(file("[1, 2, 3]"), ["not a JSON object"], "header is an array")
    assertInvalid(file("\"text\"  "), [], "header is a string")
    assertInvalid(file("12345678"), [], "header is a number")
    assertInvalid(file("null    "), [], "header is null")
    assertInvalid(file("{\"a\": {\"dtype\": \"U8\",]}"), ["not valid JSON"], "invalid JSON")
    assertInvalid(file("        "), ["JSON"], "header of spaces")
    assertInvalid(file(Data([0x7B, 0xFF, 0xFE, 0x7D]).base64EncodedString()), [], "base64 junk")
    var notUTF8 = Data("{\"a".utf8) + Data([0xC3, 0x28]) + Data("\": 1}   ".utf8)
    var l = UInt64(notUTF8.count).littleEndian
    notUTF8 = Data(bytes: &l, count: 8) + notUTF8
    assertInvalid(notUTF8, [], "invalid UTF-8")
    let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
    assertInvalid(file(deep), ["JSON"], "100000 nested arrays")
    let deepObject = String(repeating: "{\"a\":", count: 5000) + String(repeating: "}", count: 5000)
    assertInvalid(file(deepObject), [], "5000 nested objects")
    // Entries.
    assertInvalid(file(["t": [1, 2]]), ["'t'", "not an object"], "entry is an array")
    assertInvalid(file(["t": "U8"]), ["'t'", "not an object"], "entry is a string")
    assertInvalid(
      file(["t": ["shape": [4], "data_offsets": [0, 4]] as [String: Any]], data: four), ["dtype"],
      "no dtype")
    assertInvalid(file(["t": tensor(8)], data: four), ["dtype"], "dtype is a number")
    assertInvalid(
      file(["t": tensor("u8")], data: four), ["unsupported dtype u8"], "dtype lowercase")
    assertInvalid(file(["t": tensor("F64")], data: four), ["unsupported dtype F64"], "dtype F64")
    assertInvalid(file(["t": tensor("BF16")], data: four), ["dtype BF16"], "dtype BF16")
    assertInvalid(file(["t": tensor("")], data: four), ["dtype"], "dtype empty")
    assertInvalid(
      file(["t": ["dtype": "U8", "data_offsets": [0, 4]] as [String: Any]], data: four), ["shape"],
      "no shape")
    assertInvalid(file(["t": tensor("U8", "4")], data: four), ["shape"], "shape is a string")
    assertInvalid(file(["t": tensor("U8", [2.5])], data: four), ["shape"], "fractional shape")
    assertInvalid(
      file(["t": tensor("U8", [-4])], data: four), ["invalid shape [-4]"], "negative shape")
    assertInvalid(file(["t": tensor("U8", [-2, -2])], data: four), ["shape"], "two negatives")
    assertInvalid(
      file(["t": tensor("U8", [1 << 40, 1 << 40])], data: four), ["invalid shape"],
      "shape 2^40 x 2^40")
    assertInvalid(
      file(["t": tensor("U8", [Int(Int32.max), Int(Int32.max), Int(Int32.max)])], data: four),
      ["shape", "needs more than the 4 bytes"], "shape overflowing Int")
    assertInvalid(file(["t": tensor("U8", [1e30])], data: four), ["shape"], "shape 1e30")
    assertInvalid(
      file(["t": tensor("U8", Array(repeating: 1, count: 9) + [4])], data: four), ["shape"],
      "rank 10")
    assertInvalid(
      file(["t": tensor("U8", [5])], data: four), ["shape [5]"], "shape larger than offsets")
    assertInvalid(
      file(["t": tensor("U8", [3])], data: four), ["4 bytes", "needs 3"], "shape smaller")
    assertInvalid(file(["t": tensor("F32", [4])], data: four), ["shape [4] of F32"], "F32 size")
    assertInvalid(file(["t": tensor("U16", [3])], data: four), ["U16 needs 6"], "U16 size")
    assertInvalid(file(["t": tensor("I32", [2])], data: four), ["I32 needs 8"], "I32 size")
    assertInvalid(
      file(["t": ["dtype": "U8", "shape": [4]] as [String: Any]], data: four), ["data_offsets"],
      "no offsets")
    assertInvalid(
      file(["t": tensor("U8", [4], [0, 2, 4])], data: four), ["data_offsets"], "three offsets")
    assertInvalid(file(["t": tensor("U8", [4], [4])], data: four), ["data_offsets"], "one offset")
    assertInvalid(
      file(["t": tensor("U8", [4], "0-4")], data: four), ["data_offsets"], "offsets string")
    assertInvalid(
      file(["t": tensor("U8", [4], [0.5, 4.5])], data: four), ["data_offsets"], "offsets fractional"
    )
    assertInvalid(
      file(["t": tensor("U8", [0], [4, 0])], data: four), ["invalid data offsets [4, 0]"],
      "end < begin")
    assertInvalid(
      file(["t": tensor("U8", [4], [-4, 0])], data: four), ["invalid data offsets"], "negative")
    assertInvalid(
      file(["t": tensor("U8", [8], [0, 8])], data: four), ["truncated", "data offsets [0, 8]"],
      "offsets past the end")
    assertInvalid(
      file(["t": tensor("U8", [1], [Int.max - 1, Int.max])], data: four), ["offsets"],
      "offsets near Int.max")
    // Metadata.
    assertInvalid(file(["__metadata__": ["epochs": 5]]), ["__metadata__"], "metadata number")
    assertInvalid(file(["__metadata__": ["a", "b"]]), ["__metadata__"], "metadata array")
    assertInvalid(file(["__metadata__": "format"]), ["__metadata__"], "metadata string")
    assertInvalid(file(["__metadata__": ["a": ["b": "c"]]]), ["__metadata__"], "metadata nested")
    assertInvalid(file(["__metadata__": ["a": NSNull()]]), ["__metadata__"], "metadata null")
    // Well-formed edge cases still decode.
    XCTAssertEqual(try SafeTensors.decode(file([String: Any]()), path: Self.path).entries.count, 0)
    XCTAssertEqual(
      try SafeTensors.decode(file(["__metadata__": ["a": "b"]]), path: Self.path).metadata,
      ["a": "b"])
    let scalar = try? SafeTensors.decode(
      file(["s": tensor("F32", [], [0, 4])], data: four), path: Self.path)
    XCTAssertEqual(scalar?.entries["s"]?.bytes, four)
  }

  /// The format requires the tensors' byte ranges to tile the data section exactly: no
  /// overlap, no duplicate, no hole, nothing after the last tensor.
  func testDataRangesMustTileTheDataSection() {
    let eight = Data(0..<8)
    func u8(_ begin: Int, _ end: Int) -> [String: Any] {
      ["dtype": "U8", "shape": [end - begin], "data_offsets": [begin, end]]
    }
    assertInvalid(file(["a": u8(0, 5), "b": u8(3, 8)], data: eight), ["overlap"], "overlap")
    assertInvalid(file(["a": u8(0, 8), "b": u8(0, 8)], data: eight), ["overlap"], "duplicate")
    assertInvalid(file(["a": u8(0, 8), "b": u8(2, 6)], data: eight), ["overlap"], "nested")
    assertInvalid(file(["a": u8(0, 8), "b": u8(4, 4)], data: eight), ["overlap"], "empty inside")
    assertInvalid(file(["a": u8(2, 8)], data: eight), ["hole", "0..<2"], "hole at the start")
    assertInvalid(file(["a": u8(0, 3), "b": u8(5, 8)], data: eight), ["hole", "3..<5"], "hole")
    assertInvalid(file(["a": u8(0, 6)], data: eight), ["2 trailing bytes"], "trailing bytes")
    assertInvalid(file([String: Any](), data: eight), ["8 trailing bytes"], "data, no tensors")
    assertInvalid(Self.valid + Data([0]), ["1 trailing bytes"], "a byte appended")
    // Any order in the header is fine, and empty tensors may sit at any boundary.
    let ok = file(["z": u8(0, 3), "a": u8(3, 8), "e": u8(3, 3), "f": u8(8, 8)], data: eight)
    XCTAssertEqual(
      try SafeTensors.decode(ok, path: Self.path).entries.mapValues(\.bytes),
      ["z": Data(0..<3), "a": Data(3..<8), "e": Data(), "f": Data()])
  }

  // MARK: - IDX

  static let idxPath = "t.idx"

  func idx(_ dims: [UInt32], type: UInt8 = 0x08, payload: [UInt8]? = nil) -> [UInt8] {
    var bytes: [UInt8] = [0, 0, type, UInt8(truncatingIfNeeded: dims.count)]
    for d in dims { bytes += [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: d >> $0) } }
    if let payload { return bytes + payload }
    let n = dims.reduce(1) { $0 * Int($1) }
    return bytes + (0..<n).map { UInt8(truncatingIfNeeded: $0 * 37 + 11) }
  }

  func parse(_ bytes: [UInt8]) throws -> IDXFile {
    try bytes.withUnsafeBufferPointer { try IDXFile.parse($0, path: Self.idxPath) }
  }

  @discardableResult
  func assertInvalidIDX(
    _ bytes: [UInt8], _ fragments: [String], _ what: String, file: StaticString = #filePath,
    line: UInt = #line
  ) -> String? {
    assertRejected(
      path: Self.idxPath, fragments, what, file: file, line: line, { _ = try parse(bytes) })
  }

  func testValidIDXFiles() throws {
    for dims: [UInt32] in [
      [10], [4, 6], [3, 4, 5], [2, 1, 3, 3], [0], [0, 28, 28], [0xFFFF_FFFF, 0],
      [0, 0x7FFF_FFFF, 0x7FFF_FFFF],
    ] {
      let bytes = idx(dims)
      let f = try parse(bytes)
      XCTAssertEqual(f.dimensions, dims.map(Int.init))
      XCTAssertEqual(f.bytes, Array(bytes.dropFirst(4 + 4 * dims.count)))
      XCTAssertEqual(f.path, Self.idxPath)
    }
  }

  func testIDXTruncatedAtEveryByte() {
    for dims: [UInt32] in [[10], [3, 4, 5], [2, 1, 3, 3]] {
      let bytes = idx(dims)
      let headerSize = 4 + 4 * dims.count
      for k in 0..<bytes.count {
        let what = "\(dims) cut to \(k) bytes"
        let expected =
          k < 4
          ? "shorter than the 4-byte header"
          : k < headerSize ? "truncated header" : "truncated data"
        assertInvalidIDX(Array(bytes.prefix(k)), [expected], what)
      }
    }
  }

  func testIDXBadHeaders() {
    let good = idx([3, 4, 5])
    for (a, b) in [(1, 0), (0, 1), (0x1F, 0x8B), (0xFF, 0xFF)] as [(UInt8, UInt8)] {
      assertInvalidIDX([a, b] + good.dropFirst(2), ["magic"], "magic \(a) \(b)")
    }
    for type: UInt8 in [0x00, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0xFF] {
      assertInvalidIDX(idx([3], type: type), ["element type"], "type \(type)")
    }
    assertInvalidIDX([0, 0, 8, 0], ["dimensions 0"], "rank 0")
    assertInvalidIDX([0, 0, 8, 0, 1, 2, 3], ["dimensions 0"], "rank 0 with bytes")
    assertInvalidIDX(idx([1, 1, 1, 1, 2]), ["dimensions 5"], "rank 5")
    assertInvalidIDX(
      [0, 0, 8, 255] + [UInt8](repeating: 0, count: 1020), ["dimensions 255"], "rank 255")
    // Absurd dimensions: reported with no overflow or huge allocation, even when another
    // dimension is 0 (callers multiply dimensions, e.g. rows * columns of zero images).
    assertInvalidIDX(idx([0xFFFF_FFFF], payload: []), ["truncated data"], "2^32 - 1")
    let overflow = ["absurd dimensions", "overflows"]
    assertInvalidIDX(idx([0xFFFF_FFFF, 0xFFFF_FFFF], payload: [1]), overflow, "2^64")
    assertInvalidIDX(idx(Array(repeating: 0xFFFF_FFFF, count: 4), payload: [1]), overflow, "2^128")
    assertInvalidIDX(idx([0x8000_0000, 0x8000_0000, 2, 2], payload: []), overflow, "2^64 exact")
    assertInvalidIDX(idx([0, 0xFFFF_FFFF, 0xFFFF_FFFF], payload: []), overflow, "0 x 2^64")
    assertInvalidIDX(idx([0xFFFF_FFFF, 0xFFFF_FFFF, 0], payload: []), overflow, "2^64 x 0")
    // Trailing bytes.
    assertInvalidIDX(good + [0], ["1 unexpected trailing bytes"], "one trailing byte")
    assertInvalidIDX(idx([0], payload: [1, 2]), ["2 unexpected trailing bytes"], "empty + 2")
  }

  /// Each byte of the header XORed with a few masks: throws invalidFile or parses to dimensions
  /// that describe exactly the bytes.
  func testIDXFlippedHeaderBytes() {
    let good = idx([3, 4, 5])
    for position in 0..<16 {
      for mask: UInt8 in [0x01, 0x02, 0x04, 0x10, 0x80, 0xFF] {
        var bytes = good
        bytes[position] ^= mask
        let what = "byte \(position) ^ 0x\(String(mask, radix: 16))"
        do {
          let f = try parse(bytes)
          XCTAssertEqual(
            4 + 4 * f.dimensions.count + f.dimensions.reduce(1, *), bytes.count, what)
          XCTAssertEqual(f.bytes.count, f.dimensions.reduce(1, *), what)
        } catch CoppiceError.invalidFile(let path, let reason) {
          XCTAssertEqual(path, Self.idxPath, what)
          XCTAssertFalse(reason.isEmpty, what)
        } catch {
          XCTFail("\(what): unexpected error \(error)")
        }
      }
    }
  }

  /// Zero images whose rows * columns overflows: the parser used to accept such a file (its
  /// element count is 0) and FashionMNIST.load then trapped computing rows * columns.
  func testEmptyImagesWithAbsurdSizeAreRejected() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
      "coppice-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let images = directory.appendingPathComponent("train-images-idx3-ubyte")
    try Data(idx([0, 0xFFFF_FFFF, 0xFFFF_FFFF])).write(to: images)
    try Data(idx([0])).write(to: directory.appendingPathComponent("train-labels-idx1-ubyte"))
    XCTAssertThrowsError(try FashionMNIST.load(directory: directory.path, split: "train")) {
      XCTAssertTrue("\($0)".contains("absurd dimensions"), "\($0)")
      XCTAssertTrue("\($0)".contains(images.path), "\($0)")
    }
  }

  /// `read(path:)` (in IDX.swift, over the C file reader) reports the parser's errors by path.
  func testIDXReadReportsParseErrors() throws {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent(
      "coppice-\(UUID().uuidString)-cut.idx")
    defer { try? FileManager.default.removeItem(at: url) }
    try Data(idx([3, 4, 5]).dropLast(7)).write(to: url)
    XCTAssertThrowsError(try IDXFile.read(path: url.path)) { error in
      guard case CoppiceError.invalidFile(let path, let reason) = error else {
        return XCTFail("unexpected error \(error)")
      }
      XCTAssertEqual(path, url.path)
      XCTAssertTrue(reason.contains("truncated data"), reason)
    }
  }
}
