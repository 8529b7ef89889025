import CoppiceSparsity

/// An IDX file (the MNIST format): magic (two zero bytes, a type code, the number of
/// dimensions), big-endian UInt32 dimensions, then the data. Gzipped files are read directly
/// (`read(path:)`, in IDX.swift).
///
/// This file depends on nothing but CoppiceError.swift, so that the parser can be compiled on
/// its own into the libFuzzer target (fuzz/idx, `make fuzz`).
public struct IDXFile {
  public let path: String
  public let dimensions: [Int]
  /// The raw unsigned bytes (only type 0x08, unsigned byte, is supported).
  public let bytes: [UInt8]

  /// Parses the bytes of an (already decompressed) IDX file; `path` only names it in errors.
  public static func parse(_ raw: UnsafeBufferPointer<UInt8>, path: String) throws -> IDXFile {
    func fail(_ reason: String) -> CoppiceError { .invalidFile(path: path, reason: reason) }
    guard raw.count >= 4 else {
      throw fail("not an IDX file: \(raw.count) bytes, shorter than the 4-byte header")
    }
    guard raw[0] == 0, raw[1] == 0 else {
      throw fail(
        "not an IDX file: magic bytes \(raw[0]) \(raw[1]) (expected 0 0)")
    }
    guard raw[2] == 0x08 else {
      throw fail(
        "unsupported IDX element type 0x\(String(raw[2], radix: 16)) (only unsigned bytes, 0x08)")
    }
    let rank = Int(raw[3])
    guard rank >= 1 && rank <= 4 else { throw fail("unsupported number of dimensions \(rank)") }
    let headerSize = 4 + 4 * rank
    guard raw.count >= headerSize else {
      throw fail("truncated header: \(raw.count) bytes, expected at least \(headerSize)")
    }
    var dims: [Int] = []
    for d in 0..<rank {
      let o = 4 + 4 * d
      dims.append(
        Int(raw[o]) << 24 | Int(raw[o + 1]) << 16 | Int(raw[o + 2]) << 8 | Int(raw[o + 3]))
    }
    let available = raw.count - headerSize
    // The product of the non-zero dimensions must fit in an Int, so that callers can multiply
    // any of them (e.g. rows * columns of a file with zero images) without overflow.
    var nonzero = 1
    for d in dims where d != 0 {
      let (product, overflow) = nonzero.multipliedReportingOverflow(by: d)
      guard !overflow else {
        throw fail(
          "absurd dimensions \(dims): their product overflows (the file has \(available) data bytes)"
        )
      }
      nonzero = product
    }
    let expected = dims.contains(0) ? 0 : nonzero
    guard expected <= available else {
      throw fail(
        "truncated data: dimensions \(dims) need \(expected) bytes, the file has \(available)")
    }
    guard available == expected else {
      throw fail(
        "\(available - expected) unexpected trailing bytes after the \(expected) data bytes of dimensions \(dims)"
      )
    }
    return IDXFile(
      path: path, dimensions: dims, bytes: Array(raw[headerSize..<(headerSize + expected)]))
  }
}
