// libFuzzer target for the sparse-export (CSR) loader: SafeTensors.decode followed by
// CSRTensors (Sources/CoppiceEngine/Files/CSRTensors.swift) for every "<weight>.csr.values" in
// the file, as coppice_model_load, coppice_file_inspect and `coppice inspect` read an export.
// Built by mk/fuzz.mk from those two files and a one-file CoppiceSparsity module. Any input
// must load or throw invalidFile: never trap, read out of bounds or allocate absurdly. Files
// need no checksum here: the structure checks alone must hold (a file without a checksum
// entry skips verification).
import CoppiceSparsity  // CoppiceError
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCSR(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  let bytes = size == 0 ? Data() : Data(bytes: data!, count: size)
  let path = "fuzz.safetensors"
  do {
    let (entries, metadata) = try SafeTensors.decode(bytes, path: path)
    for name in entries.keys.sorted() where name.hasSuffix(".csr.values") {
      let weight = String(name.dropLast(".csr.values".count))
      let shape =
        metadata["\(weight).csr.shape"].flatMap {
          try? JSONDecoder().decode([Int].self, from: Data($0.utf8))
        } ?? []
      // What coppice_file_inspect reads: the shape and the validated parts.
      if let (rows, cols, count) = CSRTensors.matrix(shape) {
        let parts = try CSRTensors.parts(entries, name: weight, rows: rows, cols: cols, path: path)
        precondition(parts.indptr.count == rows + 1 && parts.indptr.last == parts.values.count)
        precondition(parts.indices.allSatisfy { $0 >= 0 && $0 < cols })
        // What coppice_model_load reads: the dense weight.
        let dense = try CSRTensors.dense(entries, name: weight, shape: shape, path: path)
        precondition(dense.count == count, "\(weight): dense size \(dense.count) != \(count)")
        precondition(
          dense.reduce(0) { $0 + ($1 == 0 ? 0 : 1) } <= parts.values.count, "\(weight): too many")
      } else {
        _ = try CSRTensors.dense(entries, name: weight, shape: shape, path: path)
        preconditionFailure("\(weight): invalid shape \(shape) accepted")
      }
    }
  } catch CoppiceError.invalidFile(let file, let reason) {
    precondition(file == path && !reason.isEmpty, "bad error: \(file): \(reason)")
  } catch {
    preconditionFailure("unexpected error type: \(error)")
  }
  return 0
}
