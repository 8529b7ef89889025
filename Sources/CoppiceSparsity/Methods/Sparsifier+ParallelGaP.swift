/// Running P-GaP's workers through a sparsifier. One round, in one process:
///
/// ```
/// let gap = sparsifier.parallelGaP!
/// save the round-start model (all parameters, running statistics, optimizer state)
/// for w in 0..<gap.workerCount {
///   restore the round-start model
///   try sparsifier.beginParallelWorker(w)        // partition w dense, the rest at target
///   train gap.stepLength steps with the usual per-step calls
///   snapshot[w] = targets' weights (+ the other tensors, for averaging)
/// }
/// restore the round-start model; average the non-target tensors over the workers
/// try sparsifier.finishParallelRound(workerWeights: snapshot)
/// ```
/// repeated `gap.rounds` times, then fine-tune (masks frozen). Steps count parallel time:
/// `beginParallelWorker` rewinds `stepsCompleted` to the round's first step, and
/// `finishParallelRound` sets it to the round's end, `roundsCompleted · stepLength`.
extension Sparsifier {
  /// The P-GaP schedule, when the method is `pgap`.
  public var parallelGaP: ParallelGaP? { schedule as? ParallelGaP }

  /// Installs worker `worker`'s masks: its partition dense, every other target at the round's
  /// shared mask. The grown weights are zero (they were pruned in the shared model).
  public func beginParallelWorker(_ worker: Int) throws {
    let gap = try requireParallelGaP()
    guard (0..<gap.workerCount).contains(worker) else {
      throw CoppiceError.invalidArgument(
        "P-GaP worker \(worker) out of range 0..<\(gap.workerCount)")
    }
    context.beginUpdate()
    for (t, mask) in gap.masks(forWorker: worker).enumerated() { try context.setMask(t, mask) }
    gap.currentWorker = worker
    gap.imported = [:]
    stepsCompleted = gap.roundsCompleted * gap.stepLength
    context.log(
      "step \(stepsCompleted): P-GaP round \(gap.roundsCompleted + 1), worker \(worker) grows "
        + "partition \(worker) (\(context.names(gap.partitions[worker])))")
    context.record(
      .workerBegin, step: stepsCompleted, partition: worker, targets: gap.partitions[worker])
    gap.workerSnapshot = nil
    refresh()
  }

  /// Assembles the round from every worker's target weights (`workerWeights[w][t]`, targets in
  /// registration order), writes the result into the targets and makes it the next round's
  /// shared model. `lastChanges` holds the changes relative to the round's shared masks.
  public func finishParallelRound(workerWeights: [[[Float]]]) throws {
    let gap = try requireParallelGaP()
    let assembled = try ParallelGaP.assemble(
      partitions: gap.partitions, workerWeights: workerWeights, counts: targets.map(\.count),
      zeros: targets.map(\.targetZeros), global: gap.pruneMode == .global)
    for (target, mask) in zip(targets, gap.sharedMasks) { try target.replaceMask(with: mask) }
    context.beginUpdate()
    // Targets in no partition (kept dense by design) keep their weights and masks.
    var masks = gap.sharedMasks
    for (t, target) in targets.enumerated() where !assembled.masks[t].isEmpty {
      try context.setMask(t, assembled.masks[t])
      for i in 0..<target.count { target.weights[i] = assembled.weights[t][i] }
      masks[t] = assembled.masks[t]
    }
    gap.finishRound(masks: masks)
    gap.imported = [:]
    gap.workerSnapshot = nil
    stepsCompleted = gap.roundsCompleted * gap.stepLength
    context.log(
      "step \(stepsCompleted): P-GaP round \(gap.roundsCompleted)/\(gap.rounds) assembled and "
        + "pruned to target" + (gap.isFinished ? "; masks frozen for fine-tune" : ""))
    context.record(
      .roundMerged, step: stepsCompleted, targets: Array(gap.partitions.joined()).sorted())
    if gap.isFinished {
      context.record(.frozen, step: stepsCompleted, targets: Array(targets.indices))
    }
    refresh()
  }

  // MARK: Workers elsewhere (hosts that move partitions between processes themselves)

  /// The targets of partition `worker`, in registration order.
  public func partition(ofWorker worker: Int) throws -> [Int] {
    let gap = try requireParallelGaP(allowingFinished: true)
    guard (0..<gap.workerCount).contains(worker) else {
      throw CoppiceError.invalidArgument("worker \(worker) out of range 0..<\(gap.workerCount)")
    }
    return gap.partitions[worker]
  }

  /// The number of weights in partition `worker` (the length of its flat buffer).
  public func partitionSize(ofWorker worker: Int) throws -> Int {
    try partition(ofWorker: worker).reduce(0) { $0 + targets[$1].count }
  }

  /// Copies partition `worker`'s weights (and masks, when given) into flat buffers of
  /// `partitionSize(ofWorker:)` entries, target after target.
  public func exportPartition(
    ofWorker worker: Int, weights: UnsafeMutablePointer<Float>, masks: UnsafeMutablePointer<UInt8>?
  ) throws {
    var offset = 0
    for t in try partition(ofWorker: worker) {
      let target = targets[t]
      (weights + offset).update(from: target.weights, count: target.count)
      if let masks {
        target.mask.withUnsafeBufferPointer {
          (masks + offset).update(from: $0.baseAddress!, count: target.count)
        }
      }
      offset += target.count
    }
  }

  /// Takes partition `worker`'s weights as that worker trained them (in another process) for
  /// the coming `finishParallelRoundFromImports()`; `weights` holds
  /// `partitionSize(ofWorker:)` floats. Throws on non-finite values.
  public func importPartition(ofWorker worker: Int, weights: UnsafePointer<Float>) throws {
    let gap = try requireParallelGaP()
    var values: [Int: [Float]] = [:]
    var offset = 0
    for t in try partition(ofWorker: worker) {
      let part = Array(UnsafeBufferPointer(start: weights + offset, count: targets[t].count))
      guard part.allSatisfy(\.isFinite) else {
        throw CoppiceError.invalidArgument("partition \(worker) holds NaN or infinity")
      }
      values[t] = part
      offset += part.count
    }
    gap.imported[worker] = values
  }

  /// `finishParallelRound(workerWeights:)` from the imported partitions. The current worker's
  /// own partition may be left out: it is then taken as it was after this sparsifier's last
  /// `step()` in that worker (not from the host's buffers, which the host may already have put
  /// back to the round's start). Throws `CoppiceError.invalidState` naming a partition that
  /// was neither imported nor trained here (no step since `beginParallelWorker`).
  public func finishParallelRoundFromImports() throws {
    let gap = try requireParallelGaP()
    var workerWeights: [[[Float]]] = []
    for worker in 0..<gap.workerCount {
      var weights = [[Float]](repeating: [], count: targets.count)
      for t in gap.partitions[worker] {
        if let imported = gap.imported[worker]?[t] {
          weights[t] = imported
        } else if gap.currentWorker == worker, let trained = gap.workerSnapshot?[t] {
          weights[t] = trained
        } else {
          throw CoppiceError.invalidState(
            "partition \(worker) was neither imported (coppice_sparsifier_pgap_import_partition) "
              + "nor trained here since its begin_worker before finishing the round")
        }
      }
      workerWeights.append(weights)
    }
    try finishParallelRound(workerWeights: workerWeights)
  }

  private func requireParallelGaP(allowingFinished allowed: Bool = false) throws -> ParallelGaP {
    guard let gap = parallelGaP else {
      throw CoppiceError.invalidState(
        "P-GaP calls need method pgap, not \(config.method.rawValue)")
    }
    guard isStarted else { throw CoppiceError.invalidState("sparsifier: call start() first") }
    if allowed { return gap }
    guard !gap.isFinished else {
      throw CoppiceError.invalidArgument("P-GaP: all \(gap.rounds) rounds are finished")
    }
    return gap
  }
}
