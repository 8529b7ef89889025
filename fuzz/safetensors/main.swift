// libFuzzer target for SafeTensors.decode (Sources/CoppiceEngine/Files/SafeTensors.swift). Built by
// mk/fuzz.mk from that file and a one-file CoppiceSparsity module (CoppiceError.swift); any input must decode or throw
// invalidFile (never trap, overflow, read out of bounds or allocate absurdly).
import CoppiceSparsity  // CoppiceError
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafeTensors(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  let bytes = size == 0 ? Data() : Data(bytes: data!, count: size)
  do {
    let (entries, metadata) = try SafeTensors.decode(bytes, path: "fuzz.safetensors")
    // A successful decode must be self-consistent: each tensor's bytes match its shape and
    // dtype, and together the tensors use exactly the data section.
    let length = bytes.prefix(8).withUnsafeBytes {
      Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)))
    }
    var total = 0
    for (name, e) in entries {
      precondition(e.name == name, "entry name \(e.name) under key \(name)")
      let count = e.shape.reduce(1, *)
      precondition(e.bytes.count == count * e.dtype.size, "\(name): size mismatch")
      total += e.bytes.count
    }
    precondition(8 + length + total == size, "data section not exactly covered")
    // And what was decoded survives a round trip through the writer.
    let (again, meta) = try SafeTensors.decode(
      SafeTensors.encode(Array(entries.values), metadata: metadata), path: "fuzz.safetensors")
    precondition(meta == metadata, "metadata changed in a round trip")
    precondition(again.count == entries.count, "tensor count changed in a round trip")
    for (name, e) in entries {
      let r = again[name]
      precondition(r?.dtype == e.dtype && r?.shape == e.shape && r?.bytes == e.bytes, name)
    }
  } catch CoppiceError.invalidFile(let path, let reason) {
    precondition(path == "fuzz.safetensors" && !reason.isEmpty, "bad error: \(path): \(reason)")
  } catch {
    preconditionFailure("unexpected error type: \(error)")
  }
  return 0
}
