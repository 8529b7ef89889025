// libFuzzer target for IDXFile.parse (Sources/CoppiceEngine/Data/IDXParser.swift). Built by mk/fuzz.mk
// from that file and a one-file CoppiceSparsity module (CoppiceError.swift); any input must parse or throw invalidFile.

import CoppiceSparsity  // CoppiceError

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzIDX(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  let raw = UnsafeBufferPointer(start: size == 0 ? nil : data, count: size)
  do {
    let file = try IDXFile.parse(raw, path: "fuzz.idx")
    // A successful parse must be self-consistent: the dimensions describe exactly the bytes.
    // (The product of the non-zero dimensions never overflows: callers multiply them.)
    _ = file.dimensions.filter { $0 != 0 }.reduce(1, *)
    let count = file.dimensions.reduce(1, *)
    precondition((1...4).contains(file.dimensions.count), "rank \(file.dimensions.count)")
    precondition(count == file.bytes.count, "\(file.dimensions) vs \(file.bytes.count) bytes")
    precondition(4 + 4 * file.dimensions.count + count == size, "not all bytes consumed")
  } catch CoppiceError.invalidFile(let path, let reason) {
    precondition(path == "fuzz.idx" && !reason.isEmpty, "bad error: \(path): \(reason)")
  } catch {
    preconditionFailure("unexpected error type: \(error)")
  }
  return 0
}
