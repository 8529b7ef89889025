import CoppiceSparsity
import Foundation

extension Model {
  /// Every running statistic as an F32 entry under its name.
  var bufferEntries: [SafeTensors.Entry] {
    buffers.map {
      .init(name: $0.name, shape: $0.tensor.shape, floats: UnsafeBufferPointer($0.tensor.buffer))
    }
  }

  /// Every parameter and running statistic as F32 entries under their names, and each of
  /// `masks` as "<weight>.mask" (U8, the weight's shape).
  package func tensorEntries(masks: [SparseTarget]) -> [SafeTensors.Entry] {
    parameters.map {
      .init(name: $0.name, shape: $0.shape, floats: UnsafeBufferPointer($0.value.buffer))
    } + bufferEntries
      + masks.map { .init(name: "\($0.name).mask", shape: $0.shape, mask: $0.mask) }
  }

  /// Saves every parameter and running statistic (and, when given, the sparse-training masks
  /// as "<name>.mask" U8 tensors) to a safetensors file, atomically, with a checksum.
  public func save(path: String, masks: [SparseTarget] = [], metadata: [String: String] = [:])
    throws
  {
    let entries = tensorEntries(masks: masks)
    var meta = metadata
    meta["format"] = "coppice"
    meta["kind"] = CoppiceFile.Kind.model.rawValue
    meta["model"] = name
    meta["classes"] = String(numberOfClasses)
    try AtomicFile.write(try CoppiceFile.encode(entries, metadata: meta), to: path)
  }

  /// Loads parameters and running statistics from a file of `save`, a training checkpoint, a
  /// sparse export (`SparseExport`), or any safetensors file with the same names, shapes and
  /// F32 dtype. Checksums are verified. Nothing changes unless every tensor is present, valid
  /// and matches, so a bad file leaves the model intact.
  ///
  /// When the file carries masks ("<weight>.mask" tensors, or CSR weights of an export), they
  /// are attached to the layers, which then run the sparse kernels wherever those are faster:
  /// the loaded model computes sparse, for inference or further training.
  public func load(path: String) throws {
    let (entries, metadata) = try CoppiceFile.read(path: path)
    let isCoppice = metadata["format"] == "coppice"
    let kind = isCoppice ? try CoppiceFile.checkHeader(metadata, path: path) : .model
    if isCoppice, let saved = metadata["model"], saved != name {
      throw CoppiceError.invalidFile(
        path: path, reason: "the file holds model '\(saved)', this model is '\(name)'")
    }
    var values: [(Tensor, [Float])] = []
    var masks: [(Parameter, [UInt8])] = []
    for p in parameters {
      let v: [Float]
      if kind == .sparseExport, entries[p.name] == nil, entries["\(p.name).csr.values"] != nil {
        v = try CSRTensors.dense(entries, name: p.name, shape: p.shape, path: path)
        masks.append((p, v.map { $0 == 0 ? 0 : 1 }))
      } else {
        v = try CoppiceFile.floats(entries, name: p.name, shape: p.shape, path: path)
        if let m = try CoppiceFile.mask(entries, of: p.name, shape: p.shape, path: path) {
          masks.append((p, m))
        }
      }
      values.append((p.value, v))
    }
    for b in buffers {
      values.append(
        (b.tensor, try CoppiceFile.floats(entries, name: b.name, shape: b.tensor.shape, path: path))
      )
    }
    for (tensor, v) in values { tensor.assign(v) }
    var targets: [SparseTarget] = []
    for (p, mask) in masks {
      let t = SparseTarget(parameter: p)
      try t.loadMask(mask)
      targets.append(t)
    }
    loadedMasks = targets
    attachMasks(targets)
  }
}
