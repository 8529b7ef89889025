import CCoppiceFileIO
import CCoppiceKernels
import CoppiceEngine
import CoppiceSparsity

/// Data parallelism over a `Collective`.
///
/// Data parallel: every rank holds the same model, sparsifier and data, shuffles identically,
/// and takes its contiguous share of each global batch. After backward, each rank scales its
/// gradients by (its samples / the batch's samples) and the ranks sum them, so every rank
/// applies the gradient of the whole batch — the step single-process training takes with that
/// batch, up to floating-point summation order. Gradients of sparse layers are exchanged only
/// at kept positions (dense on RigL's update steps, whose growth needs them). Masks are then
/// decided independently and identically everywhere; a CRC-32 of all masks is compared across
/// ranks after every mask update. Batch-norm layers normalise over each rank's share (no
/// synchronised batch norm); their running statistics are averaged at the end of each epoch.
extension Trainer {
  /// The collective when data parallelism is on: more than one rank, outside P-GaP's workers.
  var dataParallel: Collective? {
    guard let c = collective, c.size > 1, !inWorkerPhase else { return nil }
    return c
  }

  /// This rank's contiguous share of a global batch.
  func shard(_ indices: ArraySlice<Int>, _ c: Collective) throws -> ArraySlice<Int> {
    let n = indices.count
    guard n >= c.size else {
      throw CoppiceError.invalidArgument(
        "a batch of \(n) samples cannot be split over \(c.size) ranks (use a batch of at least "
          + "\(c.size), and a training set whose last batch has as many)")
    }
    let lo = indices.startIndex + n * c.rank / c.size
    let hi = indices.startIndex + n * (c.rank + 1) / c.size
    return indices[lo..<hi]
  }

  /// Whether any rank wants to stop (every rank then stops at the same step).
  func agreed(_ stop: Bool) throws -> Bool {
    guard let c = collective, c.size > 1 else { return stop }
    return try c.any(stop)
  }

  /// Makes every rank start from rank 0's weights, statistics and optimizer state, and checks
  /// that the masks agree.
  func synchronizeStart(_ c: Collective) throws {
    try c.broadcast(snapshotTensors, from: 0)
    if sparsifier != nil { try verifyMasks(c) }
  }

  /// Gradient values each rank contributes to a data-parallel step at the current masks
  /// (kept positions of sparse weights, everything else in full), and with dense gradients.
  public var gradientExchange: (sparse: Int, dense: Int) {
    let dense = model.parameterCount
    guard let s = sparsifier else { return (dense, dense) }
    return (dense - s.targets.reduce(0) { $0 + $1.count - $1.nonzeros }, dense)
  }

  /// Sums the batch's gradients over the ranks (see the type's comment).
  func synchronizeGradients(_ c: Collective, localCount: Int, globalCount: Int) throws {
    // Masked weights whose gradients are exchanged only at kept positions this step.
    var sparse: [ObjectIdentifier: SparseTarget] = [:]
    if let s = sparsifier, !s.needsDenseGradients {
      for t in s.targets where t.nonzeros < t.count {
        if let p = t.parameter { sparse[ObjectIdentifier(p)] = t }
      }
    }
    let parameters = model.parameters
    let total = parameters.reduce(0) { $0 + (sparse[ObjectIdentifier($1)]?.nonzeros ?? $1.count) }
    var buffer = [Float](repeating: 0, count: total)
    let scale = Float(localCount) / Float(globalCount)
    buffer.withUnsafeMutableBufferPointer { b in
      exchange(parameters, sparse) { g, k in b[k] = g.pointee * scale }
    }
    try buffer.withUnsafeMutableBufferPointer { try c.sum($0) }
    buffer.withUnsafeBufferPointer { b in
      exchange(parameters, sparse) { g, k in g.pointee = b[k] }
    }
  }

  /// Calls `visit` with each exchanged gradient value and its index in the exchange buffer:
  /// every value of dense parameters, kept positions of `sparse` ones.
  private func exchange(
    _ parameters: [Parameter], _ sparse: [ObjectIdentifier: SparseTarget],
    _ visit: (UnsafeMutablePointer<Float>, Int) -> Void
  ) {
    var k = 0
    for p in parameters {
      let g = p.grad.data
      if let t = sparse[ObjectIdentifier(p)] {
        t.mask.withUnsafeBufferPointer { mask in
          for i in 0..<p.count where mask[i] != 0 {
            visit(g + i, k)
            k += 1
          }
        }
      } else {
        for i in 0..<p.count { visit(g + i, k + i) }
        k += p.count
      }
    }
  }

  /// Averages the running statistics of normalisation layers over the ranks.
  func averageBuffers(_ c: Collective) throws {
    let scale = 1 / Float(c.size)
    for b in model.buffers {
      try c.sum(b.tensor.buffer)
      for i in 0..<b.tensor.count { b.tensor[i] *= scale }
    }
  }

  /// CRC-32 of every target's mask.
  var maskChecksum: UInt32 {
    var crc: UInt = 0
    for t in sparsifier?.targets ?? [] {
      t.mask.withUnsafeBytes { crc = ck_crc32(crc, $0.baseAddress!, $0.count) }
    }
    return UInt32(truncatingIfNeeded: crc)
  }

  /// Throws unless every rank holds the same masks.
  func verifyMasks(_ c: Collective) throws {
    var mine = [maskChecksum]
    var all = [UInt32](repeating: 0, count: c.size)
    try mine.withUnsafeMutableBytes { send in
      try all.withUnsafeMutableBytes { try c.allGather(UnsafeRawBufferPointer(send), into: $0) }
    }
    guard Set(all).count == 1 else {
      throw CoppiceError.invalidArgument(
        "masks differ across ranks after step \(stepsTaken + 1) (CRC-32 per rank: "
          + all.map { String($0, radix: 16) }.joined(separator: ", ") + ")")
    }
    maskChecks += 1
  }
}
