import CCoppiceFileIO
import CCoppiceKernels
import CoppiceSparsity

// The struct and the byte parser are in IDXParser.swift (no dependencies, fuzzed on its own).
extension IDXFile {
  /// The most bytes an IDX file may hold once decompressed (Fashion-MNIST's training images
  /// are 47 MB): a gzip bomb or a wrong file ends with a clear error, not with memory exhausted.
  public static let maxBytes = 1 << 30

  /// Reads an IDX file, gzipped or not, and parses it.
  public static func read(path: String) throws -> IDXFile {
    var pointer: UnsafeMutablePointer<UInt8>?
    var length = 0
    var message = [CChar](repeating: 0, count: 256)
    let status = ck_read_file(path, maxBytes, &pointer, &length, &message, message.count)
    guard status == 0, let pointer else {
      let reason = message.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
      throw CoppiceError.invalidFile(path: path, reason: reason)
    }
    defer { ck_free(pointer) }
    return try parse(UnsafeBufferPointer(start: pointer, count: length), path: path)
  }
}
