import XCTest

@testable import CoppiceEngine
@testable import CoppiceSparsity
@testable import CoppiceTraining

final class SparsityGaPTests: XCTestCase {
  /// C-GaP on three hand-made layers, partitions [l0] and [l1, l2], 3 steps per GaP step,
  /// 2 rounds: boundaries after steps 3, 6, 9 (grow/prune) and 12 (final prune).
  func testCyclicGaPOrderTimingAndZeroRegrowth() throws {
    var config = SparsityConfig(method: .cgap, sparsity: 0.7)
    config.partitions = .explicit([["l0"], ["l1", "l2"]])
    config.gapStepLength = 3
    config.rounds = 2
    let h = try SparsityHarness(config, totalSteps: 15)
    let initial = h.targets.map(h.weightsCopy)
    try h.sparsifier.start()
    let partitions = [[0], [1, 2]]

    func denseTargets() -> [Int] {
      h.targets.indices.filter { h.targets[$0].nonzeros == h.targets[$0].count }
    }

    // Partition 0 starts dense with its initial weights intact; the others are at target.
    XCTAssertEqual(denseTargets(), [0])
    XCTAssertEqual(h.weightsCopy(h.targets[0]), initial[0])
    XCTAssertTrue(h.atTarget(h.targets[1]) && h.atTarget(h.targets[2]))
    XCTAssertEqual(h.sparsifier.phase, "C-GaP round 1/2, partition 0 dense")
    XCTAssertTrue(h.sparsifier.lastEvents[0].contains("partition 0 (l0) dense"))

    let expectedDense: [Int: Int] = [3: 1, 6: 0, 9: 1]  // boundary step → partition grown
    var previouslyGrown: [Int: [Int]] = [:]
    for step in 1...15 {
      var expectedMasks: [Int: [UInt8]] = [:]
      let changed = try h.step(beforeUpdate: {
        // The dense partition is pruned by exact top-k of its current weights.
        for t in h.targets.indices where h.targets[t].nonzeros == h.targets[t].count {
          let target = h.targets[t]
          expectedMasks[t] = TopKMagnitude.mask(
            keeping: target.count - target.targetZeros, of: h.weightsCopy(target))
        }
      })
      let boundary = step % 3 == 0 && step <= 12
      XCTAssertEqual(changed, boundary, "step \(step)")
      // Weights grown at the previous boundary have trained away from zero since.
      for (t, grown) in previouslyGrown where !grown.isEmpty {
        XCTAssertTrue(
          grown.contains { h.targets[t].weights[$0] != 0 || h.targets[t].mask[$0] == 0 })
      }
      previouslyGrown = [:]
      if boundary {
        let pruned = (step / 3 - 1) % 2
        for t in partitions[pruned] {
          XCTAssertEqual(h.targets[t].mask, expectedMasks[t], "step \(step) target \(t)")
          XCTAssertFalse(h.sparsifier.lastChanges[t].pruned.isEmpty)
          XCTAssertTrue(h.sparsifier.lastChanges[t].grown.isEmpty)
        }
        if let grown = expectedDense[step] {
          XCTAssertEqual(denseTargets(), partitions[grown], "step \(step)")
          for t in partitions[grown] {
            let change = h.sparsifier.lastChanges[t]
            XCTAssertEqual(change.grown.count, h.targets[t].targetZeros)
            for i in change.grown {
              XCTAssertEqual(h.targets[t].weights[i], 0, "regrowth starts at zero")
            }
            previouslyGrown[t] = change.grown
          }
          let names = partitions[grown].map { "l\($0)" }.joined(separator: ", ")
          XCTAssertEqual(
            h.sparsifier.lastEvents,
            [
              "step \(step): prune partition \(pruned) (\(partitions[pruned].map { "l\($0)" }.joined(separator: ", "))), grow partition \(grown) (\(names))"
            ])
          XCTAssertEqual(
            h.sparsifier.phase, "C-GaP round \(step / 6 + 1)/2, partition \(grown) dense")
        } else {
          XCTAssertEqual(denseTargets(), [])
          XCTAssertTrue(h.sparsifier.lastEvents[0].contains("final prune of partition 1 (l1, l2)"))
        }
      } else {
        XCTAssertTrue(h.sparsifier.lastChanges.allSatisfy(\.isEmpty))
      }
      // Non-dense targets are exactly at target at every step.
      for t in h.targets where t.nonzeros != t.count { XCTAssertTrue(h.atTarget(t)) }
      h.checkMaskedAreZero()
    }
    XCTAssertTrue(h.targets.allSatisfy(h.atTarget))
    XCTAssertEqual(h.sparsifier.phase, "fine-tune")
    XCTAssertTrue(h.sparsifier.masksFrozen)
  }

  func testCyclicGaPWithOnePartitionRestartsPrunedWeightsFromZero() throws {
    var config = SparsityConfig(method: .cgap, sparsity: 0.5)
    config.partitions = .balanced(count: 1, by: .parameters)
    config.gapStepLength = 2
    config.rounds = 2
    let h = try SparsityHarness(config, totalSteps: 6)
    try h.sparsifier.start()
    try h.step()
    try h.step()  // boundary: prune everything, regrow everything
    for (n, t) in h.targets.enumerated() {
      let change = h.sparsifier.lastChanges[n]
      XCTAssertEqual(change.pruned.count, t.targetZeros)
      XCTAssertEqual(change.pruned, change.grown)
      XCTAssertEqual(t.nonzeros, t.count)
      for i in change.pruned { XCTAssertEqual(t.weights[i], 0) }
    }
    h.checkMaskedAreZero()
  }

  func testParallelGaPAssembleIsPure() throws {
    let partitions = [[0], [1]]
    let w0: [[Float]] = [[0.1, -0.9, 0.5, 0.2], [9, 9, 9]]
    let w1: [[Float]] = [[7, 7, 7, 7], [0.3, -0.3, 0.1]]
    let result = try ParallelGaP.assemble(
      partitions: partitions, workerWeights: [w0, w1], counts: [4, 3], zeros: [2, 1])
    XCTAssertEqual(result.masks, [[0, 1, 1, 0], [1, 1, 0]])
    XCTAssertEqual(result.weights, [[0, -0.9, 0.5, 0], [0.3, -0.3, 0]])
    XCTAssertThrowsError(
      try ParallelGaP.assemble(
        partitions: partitions, workerWeights: [w0], counts: [4, 3], zeros: [2, 1]))
    XCTAssertThrowsError(
      try ParallelGaP.assemble(
        partitions: partitions, workerWeights: [w0, [[1, 2, 3, 4], [1]]], counts: [4, 3],
        zeros: [2, 1]))
  }

  /// P-GaP with workers run one after another, as the trainer does in one process.
  func testParallelGaPRounds() throws {
    var config = SparsityConfig(method: .pgap, sparsity: 0.7)
    config.partitions = .explicit([["l0", "l2"], ["l1"]])
    config.gapStepLength = 2
    config.rounds = 2
    let h = try SparsityHarness(config, totalSteps: 10)
    try h.sparsifier.start()
    let gap = try XCTUnwrap(h.sparsifier.parallelGaP)
    XCTAssertEqual(gap.workerCount, 2)
    XCTAssertTrue(h.targets.allSatisfy(h.atTarget), "all workers start from a sparse model")
    for round in 0..<2 {
      let shared = gap.sharedMasks
      XCTAssertEqual(shared, h.targets.map(\.mask))
      let start = h.parameters.map { $0.value.clone() }
      var snapshots: [[[Float]]] = []
      for w in 0..<2 {
        for (p, s) in zip(h.parameters, start) { p.value.copy(from: s) }
        h.optimizer = SGD(
          parameters: h.parameters, learningRate: 0.05, momentum: 0.9, weightDecay: 0.01)
        try h.sparsifier.beginParallelWorker(w)
        XCTAssertEqual(h.sparsifier.stepsCompleted, round * 2, "workers run in parallel time")
        XCTAssertFalse(h.sparsifier.masksFrozen)
        XCTAssertEqual(
          h.sparsifier.phase, "P-GaP round \(round + 1)/2, worker \(w) (partition \(w) dense)")
        for (t, target) in h.targets.enumerated() {
          if gap.partitions[w].contains(t) {
            XCTAssertEqual(target.nonzeros, target.count)
            for i in 0..<target.count where shared[t][i] == 0 {
              XCTAssertEqual(target.weights[i], 0)
            }
          } else {
            XCTAssertEqual(target.mask, shared[t])
          }
        }
        for _ in 0..<2 { XCTAssertFalse(try h.step()) }
        h.checkMaskedAreZero()
        snapshots.append(h.targets.map(h.weightsCopy))
      }
      for (p, s) in zip(h.parameters, start) { p.value.copy(from: s) }
      try h.sparsifier.finishParallelRound(workerWeights: snapshots)
      for (t, target) in h.targets.enumerated() {
        let owner = gap.partitions.firstIndex { $0.contains(t) }!
        let expected = TopKMagnitude.mask(
          keeping: target.count - target.targetZeros, of: snapshots[owner][t])
        XCTAssertEqual(target.mask, expected)
        XCTAssertTrue(h.atTarget(target))
        for i in 0..<target.count {
          XCTAssertEqual(target.weights[i], expected[i] == 1 ? snapshots[owner][t][i] : 0)
        }
        let change = h.sparsifier.lastChanges[t]
        XCTAssertEqual(
          change.grown, (0..<target.count).filter { shared[t][$0] == 0 && expected[$0] == 1 })
        XCTAssertEqual(
          change.pruned, (0..<target.count).filter { shared[t][$0] == 1 && expected[$0] == 0 })
      }
      XCTAssertEqual(gap.roundsCompleted, round + 1)
      XCTAssertEqual(h.sparsifier.stepsCompleted, (round + 1) * 2)
    }
    XCTAssertTrue(gap.isFinished)
    XCTAssertTrue(h.sparsifier.masksFrozen)
    XCTAssertEqual(gap.lastMaskChangeStep, 4)
    XCTAssertEqual(h.sparsifier.phase, "fine-tune")
    XCTAssertTrue(h.sparsifier.lastEvents[0].contains("masks frozen"))
    XCTAssertThrowsError(try h.sparsifier.beginParallelWorker(0))
  }

  func testParallelWorkerCallsNeedPGaP() throws {
    let h = try SparsityHarness(.init(method: .cgap, sparsity: 0.5), totalSteps: 100)
    try h.sparsifier.start()
    XCTAssertNil(h.sparsifier.parallelGaP)
    XCTAssertThrowsError(try h.sparsifier.beginParallelWorker(0)) {
      XCTAssertTrue("\($0)".contains("method pgap"))
    }
  }
}
