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
    stepsCompleted = gap.roundsCompleted * gap.stepLength
    context.log(
      "step \(stepsCompleted): P-GaP round \(gap.roundsCompleted + 1), worker \(worker) grows "
        + "partition \(worker) (\(context.names(gap.partitions[worker])))")
    refresh()
  }

  /// Assembles the round from every worker's target weights (`workerWeights[w][t]`, targets in
  /// registration order), writes the result into the targets and makes it the next round's
  /// shared model. `lastChanges` holds the changes relative to the round's shared masks.
  public func finishParallelRound(workerWeights: [[[Float]]]) throws {
    let gap = try requireParallelGaP()
    let assembled = try ParallelGaP.assemble(
      partitions: gap.partitions, workerWeights: workerWeights, counts: targets.map(\.count),
      zeros: targets.map(\.targetZeros))
    for (target, mask) in zip(targets, gap.sharedMasks) { try target.replaceMask(with: mask) }
    context.beginUpdate()
    for (t, target) in targets.enumerated() {
      try context.setMask(t, assembled.masks[t])
      for i in 0..<target.count { target.weights[i] = assembled.weights[t][i] }
    }
    gap.finishRound(masks: assembled.masks)
    stepsCompleted = gap.roundsCompleted * gap.stepLength
    context.log(
      "step \(stepsCompleted): P-GaP round \(gap.roundsCompleted)/\(gap.rounds) assembled and "
        + "pruned to target" + (gap.isFinished ? "; masks frozen for fine-tune" : ""))
    refresh()
  }

  private func requireParallelGaP() throws -> ParallelGaP {
    guard let gap = parallelGaP else {
      throw CoppiceError.invalidArgument(
        "P-GaP worker calls need method pgap, not \(config.method.rawValue)")
    }
    guard isStarted else { throw CoppiceError.invalidArgument("sparsifier: call start() first") }
    guard !gap.isFinished else {
      throw CoppiceError.invalidArgument("P-GaP: all \(gap.rounds) rounds are finished")
    }
    return gap
  }
}
