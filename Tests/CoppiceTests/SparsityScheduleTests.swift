import XCTest

@testable import CoppiceEngine
@testable import CoppiceSparsity
@testable import CoppiceTraining

/// A tiny "model": parameters wrapped as targets, trained by engine SGD (momentum and weight
/// decay) on random gradients, with a sparsifier driven exactly as the trainer drives it.
final class SparsityHarness {
  static let specs: [(String, [Int])] = [("l0", [8, 10]), ("l1", [6, 3, 3, 3]), ("l2", [4, 7])]
  let parameters: [Parameter]
  let sparsifier: Sparsifier
  var optimizer: SGD
  var rng = SeededGenerator(seed: 77, stream: "gradients")

  init(
    _ config: SparsityConfig, specs: [(String, [Int])] = SparsityHarness.specs,
    totalSteps: Int, seed: UInt64 = 5
  ) throws {
    parameters = sparsityParameters(specs, seed: seed)
    sparsifier = try Sparsifier(
      targets: parameters.map { SparseTarget(parameter: $0) }, config: config, stepsPerEpoch: 10,
      totalSteps: totalSteps, seed: seed)
    optimizer = SGD(parameters: parameters, learningRate: 0.05, momentum: 0.9, weightDecay: 0.01)
  }

  var targets: [SparseTarget] { sparsifier.targets }

  /// One training step. `gradient` may replace the random gradient of a parameter.
  @discardableResult
  func step(gradient: ((Int, Parameter) -> Void)? = nil, beforeUpdate: (() -> Void)? = nil)
    throws -> Bool
  {
    for (n, p) in parameters.enumerated() {
      if let gradient {
        gradient(n, p)
      } else {
        for i in 0..<p.count { p.grad[i] = rng.nextNormal() }
      }
    }
    sparsifier.maskGradients()
    optimizer.step()
    beforeUpdate?()
    let changed = try sparsifier.step()
    if changed { optimizer.resetState(afterMaskChangesOf: sparsifier) }
    return changed
  }

  /// Masked weights and their momentum are exactly zero; nonzeros bookkeeping matches the mask.
  func checkMaskedAreZero(
    checkMomentum: Bool = true, file: StaticString = #filePath, line: UInt = #line
  ) {
    for (n, t) in targets.enumerated() {
      XCTAssertEqual(t.count - t.nonzeros, maskZeros(t), t.name, file: file, line: line)
      let velocity = optimizer.state[n].tensor
      for i in 0..<t.count where t.mask[i] == 0 {
        XCTAssertEqual(t.weights[i], 0, "\(t.name)[\(i)]", file: file, line: line)
        if checkMomentum {
          XCTAssertEqual(velocity[i], 0, "momentum \(t.name)[\(i)]", file: file, line: line)
        }
      }
    }
  }

  func atTarget(_ t: SparseTarget) -> Bool { maskZeros(t) == t.targetZeros }
  func weightsCopy(_ t: SparseTarget) -> [Float] {
    Array(UnsafeBufferPointer(start: t.weights, count: t.count))
  }
}

final class SparsityScheduleTests: XCTestCase {
  /// The registry knows every method exactly once, and each schedule names its method.
  func testEveryMethodIsRegisteredOnce() throws {
    let registered = ScheduleFactory.methods.map { $0.method }
    XCTAssertEqual(Set(registered), Set(SparsityMethod.allCases))
    XCTAssertEqual(registered.count, SparsityMethod.allCases.count)
    for method in SparsityMethod.allCases {
      let h = try SparsityHarness(.init(method: method, sparsity: 0.5), totalSteps: 400)
      XCTAssertEqual(h.sparsifier.schedule.name, method.rawValue)
    }
  }

  func testTargetZerosOfHarness() throws {
    let h = try SparsityHarness(.init(method: .staticSparse, sparsity: 0.7), totalSteps: 10)
    XCTAssertEqual(h.targets.map(\.targetZeros), [56, 113, 20])
  }

  func testDenseKeepsEverything() throws {
    let h = try SparsityHarness(.init(method: .dense, sparsity: 0.9), totalSteps: 5)
    try h.sparsifier.start()
    for _ in 0..<5 { XCTAssertFalse(try h.step()) }
    XCTAssertEqual(h.sparsifier.report.sparsity, 0)
    XCTAssertEqual(h.sparsifier.report.targetSparsity, 0)
  }

  func testStaticIsExactAtEveryStepAndMaskedWeightsStayZero() throws {
    let h = try SparsityHarness(.init(method: .staticSparse, sparsity: 0.7), totalSteps: 30)
    try h.sparsifier.start()
    let masks = h.targets.map(\.mask)
    for _ in 0..<30 {
      XCTAssertFalse(try h.step())
      XCTAssertTrue(h.targets.allSatisfy(h.atTarget))
      XCTAssertEqual(h.targets.map(\.mask), masks)
      h.checkMaskedAreZero()
    }
    XCTAssertEqual(h.sparsifier.report.nonzeros, 270 - 189)
  }

  func testOneShotPrunesAtItsStep() throws {
    var config = SparsityConfig(method: .oneshot, sparsity: 0.7)
    config.pruneStep = 5
    let h = try SparsityHarness(config, totalSteps: 12)
    try h.sparsifier.start()
    for step in 1...12 {
      var expected: [[UInt8]] = []
      let changed = try h.step(beforeUpdate: {
        expected = h.targets.map {
          TopKMagnitude.mask(keeping: $0.count - $0.targetZeros, of: h.weightsCopy($0))
        }
      })
      XCTAssertEqual(changed, step == 5)
      if step < 5 {
        XCTAssertTrue(h.targets.allSatisfy { $0.nonzeros == $0.count })
      } else {
        XCTAssertTrue(h.targets.allSatisfy(h.atTarget))
        if step == 5 { XCTAssertEqual(h.targets.map(\.mask), expected) }
      }
      h.checkMaskedAreZero()
    }
    XCTAssertEqual(h.sparsifier.phase, "fine-tune")
  }

  func testGlobalOneShotIsExactInTotal() throws {
    var config = SparsityConfig(method: .oneshot, sparsity: 0.7)
    config.pruneStep = 0
    config.globalMagnitude = true
    let h = try SparsityHarness(config, totalSteps: 3)
    try h.sparsifier.start()
    XCTAssertEqual(
      h.targets.reduce(0) { $0 + maskZeros($1) }, SparseTarget.zeros(count: 270, sparsity: 0.7))
  }

  func testGMPFollowsTheCubicScheduleExactly() throws {
    var config = SparsityConfig(method: .gmp, sparsity: 0.8)
    config.pruningBeginStep = 2
    config.pruningEndStep = 12
    config.pruningFrequency = 3
    let h = try SparsityHarness(config, totalSteps: 16)
    try h.sparsifier.start()
    let gmp = try XCTUnwrap(h.sparsifier.schedule as? GradualMagnitudePruning)
    XCTAssertEqual((0...16).filter(gmp.isPruningStep), [2, 5, 8, 11, 12])
    var lastZeros = h.targets.map(maskZeros)
    for step in 1...16 {
      try h.step()
      let zeros = h.targets.map(maskZeros)
      if gmp.isPruningStep(step) {
        for t in h.targets {
          let progress = Double(step - 2) / 10
          let s = 0.8 + (0 - 0.8) * pow(1 - progress, 3)
          XCTAssertEqual(
            maskZeros(t), SparseTarget.zeros(count: t.count, sparsity: s), "step \(step)")
        }
      } else {
        XCTAssertEqual(zeros, lastZeros, "masks change only at pruning steps")
      }
      XCTAssertTrue(zip(zeros, lastZeros).allSatisfy { $0 >= $1 }, "pruning is monotone")
      lastZeros = zeros
      h.checkMaskedAreZero()
    }
    XCTAssertTrue(h.targets.allSatisfy(h.atTarget))
  }

  func testRigLDropAndGrowFollowCosineSchedule() throws {
    var config = SparsityConfig(method: .rigl, sparsity: 0.7)
    config.distribution = .uniform
    config.updateInterval = 10
    let h = try SparsityHarness(config, totalSteps: 100)
    try h.sparsifier.start()
    let rigl = try XCTUnwrap(h.sparsifier.schedule as? RigL)
    XCTAssertEqual(rigl.timing.endStep, 75)
    XCTAssertEqual(rigl.timing.decay, .cosine)
    XCTAssertEqual(rigl.timing.dropFraction, 0.3)
    var updates: [Int] = []
    for step in 1...100 {
      XCTAssertEqual(h.sparsifier.needsDenseGradients, step % 10 == 0 && step < 75, "step \(step)")
      XCTAssertEqual(
        h.targets.map(\.needsDenseGradient),
        Array(repeating: h.sparsifier.needsDenseGradients, count: 3))
      let before = h.targets.map(\.mask)
      var expectedDrop: [[Int]] = []
      // Gradient: 0 on kept weights, distinct positive values (growing with index) on pruned.
      let changed = try h.step(
        gradient: { n, p in
          for i in 0..<p.count { p.grad[i] = before[n][i] == 1 ? 0 : 1 + Float(i) * 0.001 }
        },
        beforeUpdate: {
          expectedDrop = h.targets.map { t in
            let kept = h.weightsCopy(t).enumerated().filter { t.mask[$0.offset] == 1 }
            let k = rigl.timing.dropCount(nonzeros: t.nonzeros, step: step)
            let order = kept.sorted { a, b in
              a.element.magnitude != b.element.magnitude
                ? a.element.magnitude < b.element.magnitude : a.offset > b.offset
            }
            return order.prefix(k).map(\.offset).sorted()
          }
        })
      if changed { updates.append(step) }
      for (n, t) in h.targets.enumerated() {
        XCTAssertTrue(h.atTarget(t))
        let change = h.sparsifier.lastChanges[n]
        guard step % 10 == 0 && step < 75 else {
          XCTAssertTrue(change.isEmpty)
          continue
        }
        let alpha = 0.3 / 2 * (1 + cos(Double.pi * Double(step) / 75))
        let k = Int((alpha * Double(t.count - t.targetZeros)).rounded())
        XCTAssertEqual(change.pruned, expectedDrop[n], "\(t.name) step \(step)")
        XCTAssertEqual(change.pruned.count, k)
        // Grown: the k largest gradients among previously pruned = the k highest indices.
        let previouslyPruned = (0..<t.count).filter { before[n][$0] == 0 }
        XCTAssertEqual(change.grown, Array(previouslyPruned.suffix(k)))
        for i in change.grown { XCTAssertEqual(t.weights[i], 0, "grown weights start at zero") }
      }
      h.checkMaskedAreZero()
    }
    // At step 70 the decayed fraction (0.0033) rounds to zero weights in these small layers.
    XCTAssertEqual(updates, [10, 20, 30, 40, 50, 60])
    XCTAssertEqual(h.sparsifier.events.filter { $0.contains("RigL drop fraction") }.count, 7)
    XCTAssertEqual(h.sparsifier.phase, "fine-tune")
  }

  func testSETDropsSmallestAndRegrowsAtRandom() throws {
    for decay in [DropFractionDecay.constant, .cosine] {
      var config = SparsityConfig(method: .set, sparsity: 0.7)
      config.updateInterval = 5
      config.dropFractionDecay = decay
      let h = try SparsityHarness(config, totalSteps: 40)
      try h.sparsifier.start()
      let set = try XCTUnwrap(h.sparsifier.schedule as? SparseEvolutionaryTraining)
      XCTAssertFalse(set.needsDenseGradients(atStep: 5))
      for step in 1...40 {
        let before = h.targets.map(\.mask)
        var smallest: [Set<Int>] = []
        var expectedMoved = 0
        try h.step(beforeUpdate: {
          smallest = h.targets.map { t in
            let k = set.timing.dropCount(nonzeros: t.nonzeros, step: step)
            expectedMoved += k
            let kept = (0..<t.count).filter { t.mask[$0] == 1 }
            return Set(
              kept.sorted {
                t.weights[$0].magnitude != t.weights[$1].magnitude
                  ? t.weights[$0].magnitude < t.weights[$1].magnitude : $0 > $1
              }.prefix(k))
          }
        })
        let isUpdate = step % 5 == 0 && step < 30
        if isUpdate {
          let alpha = decay == .constant ? 0.3 : 0.15 * (1 + cos(Double.pi * Double(step) / 30))
          XCTAssertEqual(set.timing.fraction(atStep: step), alpha, accuracy: 1e-12)
          XCTAssertTrue(
            h.sparsifier.lastEvents.last!.contains("dropped and regrew \(expectedMoved) weights"))
        }
        for (n, t) in h.targets.enumerated() {
          XCTAssertTrue(h.atTarget(t))
          let change = h.sparsifier.lastChanges[n]
          XCTAssertEqual(change.pruned.count, change.grown.count)
          XCTAssertTrue(Set(change.pruned).isSubset(of: smallest[n]))
          XCTAssertTrue(change.grown.allSatisfy { before[n][$0] == 0 })
          if !isUpdate { XCTAssertTrue(change.isEmpty) }
        }
        h.checkMaskedAreZero()
      }
    }
  }

  func testMethodDefaults() throws {
    let rigl = try SparsityHarness(.init(method: .rigl, sparsity: 0.9), totalSteps: 1000)
    XCTAssertEqual(rigl.sparsifier.config.resolvedDistribution, .erk(power: 1))
    let timing = (rigl.sparsifier.schedule as! RigL).timing
    XCTAssertEqual(
      timing, DynamicSparseTiming(interval: 100, endStep: 750, dropFraction: 0.3, decay: .cosine))
    let set = try SparsityHarness(.init(method: .set, sparsity: 0.9), totalSteps: 1000)
    XCTAssertEqual((set.sparsifier.schedule as! SparseEvolutionaryTraining).timing.decay, .constant)
    let gmp = try SparsityHarness(.init(method: .gmp, sparsity: 0.9), totalSteps: 1000)
    let g = gmp.sparsifier.schedule as! GradualMagnitudePruning
    XCTAssertEqual([g.beginStep, g.endStep, g.frequency], [250, 750, 100])
    let cgap = try SparsityHarness(.init(method: .cgap, sparsity: 0.9), totalSteps: 1000)
    let c = cgap.sparsifier.schedule as! CyclicGaP
    XCTAssertEqual(c.partitions, [[0], [1], [2]])
    XCTAssertEqual(c.rounds, 1)
    XCTAssertEqual(c.stepLength, 250)
    XCTAssertTrue(cgap.sparsifier.events.contains { $0.contains("partitions reduced from 4 to 3") })
  }
}
