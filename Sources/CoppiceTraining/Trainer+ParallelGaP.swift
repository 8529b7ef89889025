import CoppiceEngine
import CoppiceSparsity
import Foundation

/// P-GaP run by the trainer: its workers one after another in one process, or one per rank.
extension Trainer {

  /// The run's tensors with their checkpoint names: parameters, running statistics, optimizer
  /// state (everything a P-GaP worker changes).
  var stateTensors: [(name: String, tensor: Tensor)] {
    model.parameters.map { ($0.name, $0.value) } + model.buffers.map { ($0.name, $0.tensor) }
      + optimizer.state.map { ("optimizer.\($0.name)", $0.tensor) }
  }

  var snapshotTensors: [Tensor] { stateTensors.map(\.tensor) }

  private func snapshot() -> [[Float]] { snapshotTensors.map(\.array) }

  private func restore(_ values: [[Float]]) {
    for (t, v) in zip(snapshotTensors, values) { t.assign(v) }
  }

  /// Runs P-GaP's remaining rounds: every worker grows its partition for one GaP step, starting
  /// from the round's shared model (every worker from the same state: weights, statistics,
  /// optimizer state, generators); then partition i is taken from worker i, every other tensor
  /// (biases, norms, running statistics, optimizer state) is averaged over the workers, and the
  /// result is pruned to target. In one process the workers run one after another; with a
  /// collective of K ranks, rank i runs worker i and the round is assembled from what the ranks
  /// exchange — the same arithmetic in the same order, so the same bits.
  func runParallelGaP(
    _ gap: ParallelGaP, train: Dataset, test: Dataset, batchesPerEpoch: Int,
    progress: ((BatchProgress) -> Void)?, epochEnd: ((EpochRecord) -> Void)?,
    shouldStop: () -> Bool
  ) throws {
    guard let sparsifier else { return }
    guard gap.stepLength % batchesPerEpoch == 0 else {
      throw CoppiceError.invalidArgument(
        "P-GaP in the engine needs a step length of whole epochs (\(gap.stepLength) steps, "
          + "\(batchesPerEpoch) per epoch)")
    }
    let ranks = collective.map(\.size) ?? 1
    if ranks > 1 && ranks != gap.workerCount {
      throw CoppiceError.invalidArgument(
        "P-GaP runs one worker per rank: \(gap.workerCount) partitions need \(gap.workerCount) "
          + "ranks (mpirun -np \(gap.workerCount)), not \(ranks)")
    }
    let myWorkers = ranks > 1 ? [collective!.rank] : Array(0..<gap.workerCount)
    inWorkerPhase = ranks > 1
    defer { inWorkerPhase = false }
    let epochsPerStep = gap.stepLength / batchesPerEpoch
    let targetIndex = Dictionary(
      uniqueKeysWithValues: sparsifier.targets.enumerated().compactMap { i, t in
        t.parameter.map { (ObjectIdentifier($0), i) }
      })
    let tensors = snapshotTensors
    // The partitions' weights come from their workers through the sparsifier; targets in no
    // partition (kept dense by design) are shared tensors like biases.
    let inPartition = Set(gap.partitions.joined())
    let isTarget =
      model.parameters.map { p in
        targetIndex[ObjectIdentifier(p)].map(inPartition.contains) ?? false
      }
      + [Bool](repeating: false, count: tensors.count - model.parameters.count)
    // With the partition merge, every other tensor of a partition's layers comes from the
    // worker that grew the partition.
    let owner: [Int?] =
      sparsifier.config.pgapMerge == .partition
      ? tensorOwners(gap, sparsifier: sparsifier) : tensors.map { _ in nil }
    while !gap.isFinished {
      let roundStart = snapshot()
      let stateAtStart = runState()
      let sparsifierAtStart = sparsifier.snapshot()
      var workerWeights = [[[Float]]](repeating: [], count: gap.workerCount)
      var sums = tensors.map { [Double](repeating: 0, count: $0.count) }
      var copies = [[Float]?](repeating: nil, count: tensors.count)
      var run = EpochRun()
      run.phase = "P-GaP round \(gap.roundsCompleted + 1)/\(gap.rounds), \(gap.workerCount) workers"
      for worker in myWorkers {
        restore(roundStart)
        startWorker(from: stateAtStart)
        try sparsifier.beginParallelWorker(worker)
        for e in 0..<epochsPerStep {
          guard
            let r = try trainEpoch(
              train: train, epoch: epochsDone + e, batchesPerEpoch: batchesPerEpoch,
              progress: progress, shouldStop: shouldStop)
          else {
            // A round is all or nothing: go back to its start.
            restore(roundStart)
            apply(runState: stateAtStart)
            try sparsifier.restore(sparsifierAtStart)
            wasInterrupted = true
            return
          }
          run.lossSum += r.lossSum
          run.correct += r.correct
          run.seen += r.seen
          run.seconds += r.seconds
          run.learningRate = r.learningRate
        }
        workerWeights[worker] = sparsifier.targets.map {
          Array(UnsafeBufferPointer(start: $0.weights, count: $0.count))
        }
        if ranks == 1 {
          for (i, t) in tensors.enumerated() where !isTarget[i] {
            if owner[i] == nil {
              for j in 0..<t.count { sums[i][j] += Double(t[j]) }
            } else if owner[i] == worker {
              copies[i] = t.array
            }
          }
        }
      }
      if ranks > 1, let c = collective {
        try exchangeRound(
          c, partitions: gap.partitions, workerWeights: &workerWeights, sums: &sums,
          tensors: tensors, isTarget: isTarget)
        for (i, t) in tensors.enumerated() where !isTarget[i] {
          guard let from = owner[i] else { continue }
          var values = t.array
          try values.withUnsafeMutableBytes { try c.broadcast($0, from: from) }
          copies[i] = values
        }
        try combine(&run, c)
      }
      restore(roundStart)
      let scale = 1 / Double(gap.workerCount)
      for (i, t) in tensors.enumerated() where !isTarget[i] {
        if let copy = copies[i] {
          t.assign(copy)
        } else {
          for j in 0..<t.count { t[j] = Float(sums[i][j] * scale) }
        }
      }
      try sparsifier.finishParallelRound(workerWeights: workerWeights)
      optimizer.resetState(afterMaskChangesOf: sparsifier)
      stepsTaken = stateAtStart.stepsTaken + gap.stepLength
      optimizer.stepCount = stateAtStart.optimizerSteps + Int64(gap.stepLength)
      // The next round (or the fine-tune) starts with a fresh optimizer, step count 0.
      if sparsifier.config.restartOptimizerPerStep { optimizer.resetAllState() }
      let record = makeRecord(epoch: epochsDone + epochsPerStep, run: run, test: test)
      history.append(record)
      epochEnd?(record)
    }
  }

  /// Per state tensor (`stateTensors` order), the partition whose layers it belongs to, nil for
  /// tensors of no partition's layers: a layer unit (`Model.layerUnits`: a conv/linear layer
  /// with its norm, or a whole residual block) belongs to the partition of its weights; an
  /// optimizer state tensor to its parameter's.
  func tensorOwners(_ gap: ParallelGaP, sparsifier: Sparsifier) -> [Int?] {
    var partitionOfTarget: [String: Int] = [:]
    for (p, members) in gap.partitions.enumerated() {
      for t in members { partitionOfTarget[sparsifier.targets[t].name] = p }
    }
    var ownerOf: [String: Int] = [:]
    for unit in model.layerUnits {
      guard let p = unit.weights.lazy.compactMap({ partitionOfTarget[$0] }).first else { continue }
      for name in unit.members { ownerOf[name] = p }
    }
    return stateTensors.map { name, _ -> Int? in
      if let p = ownerOf[name] { return p }
      guard name.hasPrefix("optimizer.") else { return nil }
      let parameter = name.dropFirst("optimizer.".count).split(separator: ".").dropLast()
        .joined(separator: ".")
      return ownerOf[parameter]
    }
  }

  /// Puts a P-GaP worker at the round's start: step counters, generators, dropout draws and
  /// optimizer steps as they were (run time and the epoch's FLOP count keep accumulating).
  private func startWorker(from s: TrainerRunState) {
    let kept = (epochFLOPs, trainSeconds, imagesSeen)
    apply(runState: s)
    (epochFLOPs, trainSeconds, imagesSeen) = kept
  }

  /// P-GaP over ranks: worker w's weights of partition w's targets from rank w, and every
  /// rank's other tensors, summed into `sums` (zero on entry) in rank order, as one process
  /// sums its workers.
  func exchangeRound(
    _ c: Collective, partitions: [[Int]], workerWeights: inout [[[Float]]], sums: inout [[Double]],
    tensors: [Tensor], isTarget: [Bool]
  ) throws {
    guard let targets = sparsifier?.targets else { return }
    for (worker, partition) in partitions.enumerated() {
      var received = [[Float]](repeating: [], count: targets.count)
      for t in partition {
        var values =
          worker == c.rank
          ? workerWeights[worker][t] : [Float](repeating: 0, count: targets[t].count)
        try values.withUnsafeMutableBytes { try c.broadcast($0, from: worker) }
        received[t] = values
      }
      workerWeights[worker] = received
    }
    let shared = tensors.indices.filter { !isTarget[$0] }
    var local: [Float] = []
    for i in shared { local += tensors[i].array }
    var gathered = [Float](repeating: 0, count: local.count * c.size)
    try local.withUnsafeBytes { send in
      try gathered.withUnsafeMutableBytes { try c.allGather(send, into: $0) }
    }
    for rank in 0..<c.size {
      var offset = rank * local.count
      for i in shared {
        for j in 0..<tensors[i].count { sums[i][j] += Double(gathered[offset + j]) }
        offset += tensors[i].count
      }
    }
  }

  /// Sums a P-GaP round's loss, hits, samples and FLOPs over the ranks.
  func combine(_ run: inout EpochRun, _ c: Collective) throws {
    let totals = try c.sum([
      run.lossSum, Double(run.correct), Double(run.seen), epochFLOPs.actual, epochFLOPs.dense,
    ])
    run.lossSum = totals[0]
    run.correct = Int(totals[1])
    run.seen = Int(totals[2])
    epochFLOPs = (totals[3], totals[4])
  }
}
