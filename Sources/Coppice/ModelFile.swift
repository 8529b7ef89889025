import Foundation

extension Model {
  /// Saves every parameter and running statistic (and, when given, the sparse-training masks
  /// as "<name>.mask" U8 tensors) to a safetensors file, atomically, with a checksum.
  public func save(path: String, masks: [SparseTarget] = [], metadata: [String: String] = [:])
    throws
  {
    var entries: [SafeTensors.Entry] = []
    for p in parameters {
      entries.append(
        .init(name: p.name, shape: p.shape, floats: UnsafeBufferPointer(p.value.buffer)))
    }
    for b in buffers {
      entries.append(
        .init(name: b.name, shape: b.tensor.shape, floats: UnsafeBufferPointer(b.tensor.buffer)))
    }
    for t in masks { entries.append(.init(name: "\(t.name).mask", shape: t.shape, mask: t.mask)) }
    var meta = metadata
    meta["format"] = "coppice"
    meta["kind"] = Checkpoint.Kind.model.rawValue
    meta["model"] = name
    meta["classes"] = String(numberOfClasses)
    try AtomicFile.write(try Checkpoint.encode(entries, metadata: meta), to: path)
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
    let (entries, metadata) = try Checkpoint.read(path: path)
    let isCoppice = metadata["format"] == "coppice"
    let kind = isCoppice ? try Checkpoint.checkHeader(metadata, path: path) : .model
    if isCoppice, let saved = metadata["model"], saved != name {
      throw CoppiceError.invalidFile(
        path: path, reason: "the file holds model '\(saved)', this model is '\(name)'")
    }
    var values: [(Tensor, [Float])] = []
    var masks: [(Parameter, [UInt8])] = []
    for p in parameters {
      let v: [Float]
      if kind == .sparseExport, entries[p.name] == nil, entries["\(p.name).csr.values"] != nil {
        v = try SparseExport.denseWeight(entries, name: p.name, shape: p.shape, path: path)
        masks.append((p, v.map { $0 == 0 ? 0 : 1 }))
      } else {
        v = try Checkpoint.floats(entries, name: p.name, shape: p.shape, path: path)
        if let m = entries["\(p.name).mask"] {
          guard m.dtype == .u8, m.shape == p.shape else {
            throw CoppiceError.invalidFile(
              path: path,
              reason:
                "mask '\(p.name).mask' is \(m.dtype.rawValue) \(m.shape), expected U8 \(p.shape)")
          }
          masks.append((p, [UInt8](m.bytes)))
        }
      }
      values.append((p.value, v))
    }
    for b in buffers {
      values.append(
        (b.tensor, try Checkpoint.floats(entries, name: b.name, shape: b.tensor.shape, path: path)))
    }
    for (tensor, v) in values {
      v.withUnsafeBufferPointer { tensor.data.update(from: $0.baseAddress!, count: tensor.count) }
    }
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
