import XCTest

@testable import CoppiceEngine
@testable import CoppiceSparsity
@testable import CoppiceTraining

final class SparsitySparsifierTests: XCTestCase {
  func testMaskedWeightsStayZeroThroughMomentumAndWeightDecay() throws {
    // Without the sparsifier re-applying masks, momentum from before a prune and weight decay
    // would move pruned weights; with it they stay exactly zero at every step.
    var config = SparsityConfig(method: .oneshot, sparsity: 0.8)
    config.pruneStep = 3
    config.resetOptimizerState = false  // keep stale momentum on purpose
    let h = try SparsityHarness(config, totalSteps: 20)
    try h.sparsifier.start()
    for step in 1...20 {
      try h.step()
      for t in h.targets {
        for i in 0..<t.count where t.mask[i] == 0 {
          XCTAssertEqual(t.weights[i], 0, "step \(step)")
        }
      }
    }
    // And with the optimizer-state reset, momentum is zero at pruned positions too.
    config.resetOptimizerState = true
    let r = try SparsityHarness(config, totalSteps: 20)
    try r.sparsifier.start()
    for _ in 1...20 {
      try r.step()
      r.checkMaskedAreZero()
    }
  }

  func testHostBuffersWithoutGradients() throws {
    let weights = UnsafeMutablePointer<Float>.allocate(capacity: 12)
    defer { weights.deallocate() }
    for i in 0..<12 { weights[i] = Float(i) - 5.5 }
    let target = try SparseTarget(name: "host", shape: [3, 4], weights: weights)
    XCTAssertNil(target.parameter)
    XCTAssertThrowsError(try SparseTarget(name: "", shape: [1], weights: weights))
    XCTAssertThrowsError(try SparseTarget(name: "x", shape: [-1], weights: weights))
    XCTAssertThrowsError(
      try SparseTarget(name: "x", shape: [1], weights: weights, targetSparsity: 1))
    // RigL needs gradients; static does not.
    XCTAssertThrowsError(
      try Sparsifier(
        targets: [target], config: .init(method: .rigl, sparsity: 0.5), stepsPerEpoch: 1,
        totalSteps: 10, seed: 1)
    ) { XCTAssertTrue("\($0)".contains("gradient buffer")) }
    let s = try Sparsifier(
      targets: [target], config: .init(method: .oneshot, sparsity: 0.5), stepsPerEpoch: 1,
      totalSteps: 2, seed: 1)
    try s.start()
    XCTAssertTrue(try s.step())
    XCTAssertEqual(target.mask, [1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1])
    XCTAssertEqual(target.nonzeros, 6)
    XCTAssertEqual(target.maskVersion, 1)
    s.maskGradients()  // no gradient buffer: a no-op
  }

  /// The second half of examples/swift/main.swift: static sparsity at 75% over a Swift array
  /// the program owns leaves exactly 750 of its 1000 weights zero.
  func testStaticSparsityOverAHostArrayIsExact() throws {
    var weights = (0..<1000).map { Float($0 % 17) - 8.5 }
    try weights.withUnsafeMutableBufferPointer { buffer in
      let target = try SparseTarget(name: "w", shape: [40, 25], weights: buffer.baseAddress!)
      let sparsifier = try Sparsifier(
        targets: [target], config: SparsityConfig(method: .staticSparse, sparsity: 0.75),
        stepsPerEpoch: 10, totalSteps: 10, seed: 0)
      try sparsifier.start()
      for _ in 0..<10 { try sparsifier.step() }
    }
    XCTAssertEqual(weights.filter { $0 == 0 }.count, 750)
  }

  func testReportAndFLOPs() throws {
    let model = ReferenceModel.mlp.build(seed: 1)
    let targets = model.sparseTargets()
    let s = try Sparsifier(
      targets: targets, config: .init(method: .staticSparse, sparsity: 0.9), stepsPerEpoch: 10,
      totalSteps: 100, seed: 3)
    try s.start()
    let report = s.report
    XCTAssertEqual(report.layers.map(\.name), ["fc1.weight", "fc2.weight", "fc3.weight"])
    XCTAssertEqual(report.count, 266_200)
    XCTAssertEqual(report.nonzeros, 266_200 - (211_680 + 27_000 + 900))
    XCTAssertEqual(report.sparsity, report.targetSparsity)
    XCTAssertEqual(report.denseFLOPs, 2 * 266_200)
    XCTAssertEqual(report.sparseFLOPs, 2 * Double(report.nonzeros))
    XCTAssertTrue(report.table.contains("fc1.weight"))
    let json = String(decoding: try JSONEncoder().encode(report), as: UTF8.self)
    XCTAssertTrue(json.contains("\"target_sparsity\""))
    XCTAssertEqual(model.attachMasks(targets), 3)
  }

  func testCNNMasksAttachToLayers() throws {
    let model = ReferenceModel.cnn.build(seed: 1)
    let targets = model.sparseTargets()
    XCTAssertEqual(model.attachMasks(targets), 5)
    let conv1 = model.network.allLayers.compactMap { $0 as? Conv2d }.first!
    XCTAssertTrue(conv1.maskSource === targets[0])
  }

  func testConfigValidation() throws {
    func error(_ config: SparsityConfig, steps: Int = 100) -> String {
      do {
        _ = try SparsityHarness(config, totalSteps: steps)
        return "no error"
      } catch { return "\(error)" }
    }
    XCTAssertTrue(error(.init(method: .cgap, sparsity: 1)).contains("sparsity must be in [0, 1)"))
    XCTAssertTrue(
      error(.init(method: .cgap, sparsity: -0.1)).contains("sparsity must be in [0, 1)"))
    XCTAssertTrue(
      error(.init(method: .cgap, sparsity: .nan)).contains("sparsity must be in [0, 1)"))
    var c = SparsityConfig(method: .cgap)
    c.partitions = .balanced(count: 0, by: .flops)
    XCTAssertTrue(error(c).contains("partitions must be ≥ 1"))
    c = SparsityConfig(method: .cgap)
    c.rounds = 0
    XCTAssertTrue(error(c).contains("rounds must be ≥ 1"))
    c = SparsityConfig(method: .cgap)
    c.rounds = 2
    c.gapStepLength = 40
    XCTAssertTrue(error(c).contains("= 240 optimizer steps, but training has only 100"))
    c = SparsityConfig(method: .pgap)
    c.rounds = 2
    c.gapStepLength = 40
    XCTAssertTrue(error(c, steps: 79).contains("2 rounds × 40 steps = 80 optimizer steps"))
    XCTAssertEqual(error(c, steps: 80), "no error")
    c = SparsityConfig(method: .rigl)
    c.dropFraction = 1.5
    XCTAssertTrue(error(c).contains("drop fraction"))
    c = SparsityConfig(method: .gmp)
    c.pruningBeginStep = 50
    c.pruningEndStep = 10
    XCTAssertTrue(error(c).contains("before the begin step"))
    c.pruningBeginStep = nil
    XCTAssertTrue(error(c, steps: 5).contains("after the end of training"))
    c = SparsityConfig(method: .oneshot)
    c.pruneStep = 101
    XCTAssertTrue(error(c).contains("prune step 101 is after the end of training"))
    c = SparsityConfig(method: .staticSparse)
    XCTAssertTrue(error(c, steps: 0).contains("total steps"))
    c.partitions = .explicit([["l0"], ["l1"]])
    c.method = .pgap
    XCTAssertTrue(error(c).contains("not in any partition: l2"))
    XCTAssertThrowsError(try SparsityMethod(parsing: "gap")) {
      XCTAssertTrue("\($0)".contains("dense, static, oneshot, gmp, set, rigl, cgap, pgap"))
    }
    XCTAssertEqual(try SparsityMethod(parsing: "CGaP"), .cgap)
    let p = sparsityParameters([("same", [2]), ("same", [3])])
    XCTAssertThrowsError(
      try Sparsifier(
        targets: p.map { SparseTarget(parameter: $0) }, config: .init(method: .staticSparse),
        stepsPerEpoch: 1, totalSteps: 1, seed: 1)
    ) { XCTAssertTrue("\($0)".contains("registered twice")) }
  }

  func testStepBeforeStartThrows() throws {
    let h = try SparsityHarness(.init(method: .staticSparse), totalSteps: 5)
    XCTAssertThrowsError(try h.sparsifier.step())
    XCTAssertThrowsError(try h.sparsifier.stateData())
  }

  // MARK: State

  /// Runs `config` for `first` steps, saves, restores into a fresh sparsifier over copies of
  /// the weights, then runs both for `then` steps with identical gradients: masks must agree.
  func roundTrip(_ config: SparsityConfig, total: Int, first: Int, then: Int) throws {
    let a = try SparsityHarness(config, totalSteps: total)
    try a.sparsifier.start()
    for _ in 0..<first { try a.step() }
    let data = try a.sparsifier.stateData()

    let b = try SparsityHarness(config, totalSteps: total)
    for (pa, pb) in zip(a.parameters, b.parameters) { pb.value.copy(from: pa.value) }
    // Fresh optimizers on both sides, so only the restored sparsifier state carries over.
    b.optimizer = SGD(
      parameters: b.parameters, learningRate: 0.05, momentum: 0.9, weightDecay: 0.01)
    a.optimizer = SGD(
      parameters: a.parameters, learningRate: 0.05, momentum: 0.9, weightDecay: 0.01)
    try b.sparsifier.restore(from: data)
    XCTAssertEqual(b.targets.map(\.mask), a.targets.map(\.mask))
    XCTAssertEqual(b.sparsifier.stepsCompleted, first)
    XCTAssertEqual(b.sparsifier.phase, a.sparsifier.phase)
    b.rng = a.rng
    for _ in 0..<then {
      try a.step()
      try b.step()
      XCTAssertEqual(b.targets.map(\.mask), a.targets.map(\.mask), config.method.rawValue)
    }
    XCTAssertEqual(try b.sparsifier.stateData(), try a.sparsifier.stateData())
  }

  func testStateRoundTrip() throws {
    var rigl = SparsityConfig(method: .rigl, sparsity: 0.7)
    rigl.updateInterval = 3
    try roundTrip(rigl, total: 40, first: 7, then: 20)
    var set = SparsityConfig(method: .set, sparsity: 0.7)
    set.updateInterval = 3
    try roundTrip(set, total: 40, first: 7, then: 20)
    var cgap = SparsityConfig(method: .cgap, sparsity: 0.7)
    cgap.gapStepLength = 4
    try roundTrip(cgap, total: 30, first: 5, then: 20)
    try roundTrip(.init(method: .gmp, sparsity: 0.7), total: 30, first: 9, then: 20)
  }

  func testParallelGaPStateRoundTrip() throws {
    var config = SparsityConfig(method: .pgap, sparsity: 0.6)
    config.gapStepLength = 2
    let a = try SparsityHarness(config, totalSteps: 40)
    try a.sparsifier.start()
    try a.sparsifier.beginParallelWorker(1)
    try a.step()
    let data = try a.sparsifier.stateData()
    let b = try SparsityHarness(config, totalSteps: 40)
    try b.sparsifier.restore(from: data)
    let gapA = a.sparsifier.parallelGaP!
    let gapB = b.sparsifier.parallelGaP!
    XCTAssertEqual(gapB.sharedMasks, gapA.sharedMasks)
    XCTAssertEqual(gapB.currentWorker, 1)
    XCTAssertEqual(b.targets.map(\.mask), a.targets.map(\.mask))
    XCTAssertEqual(b.sparsifier.phase, a.sparsifier.phase)
  }

  func testRestoreRejectsMismatches() throws {
    let a = try SparsityHarness(.init(method: .staticSparse, sparsity: 0.5), totalSteps: 10)
    try a.sparsifier.start()
    let data = try a.sparsifier.stateData()
    func error(_ h: SparsityHarness, _ data: Data) -> String {
      do {
        try h.sparsifier.restore(from: data)
        return "no error"
      } catch { return "\(error)" }
    }
    XCTAssertTrue(
      error(try SparsityHarness(.init(method: .rigl, sparsity: 0.5), totalSteps: 10), data)
        .contains("saved for method static"))
    XCTAssertTrue(
      error(
        try SparsityHarness(.init(method: .staticSparse, sparsity: 0.5), totalSteps: 10, seed: 6),
        data
      )
      .contains("seed"))
    let other = try SparsityHarness(
      .init(method: .staticSparse, sparsity: 0.5),
      specs: [("l0", [8, 10]), ("zz", [6, 3, 3, 3]), ("l2", [4, 7])],
      totalSteps: 10)
    XCTAssertTrue(error(other, data).contains("does not match"))
    let fresh = try SparsityHarness(.init(method: .staticSparse, sparsity: 0.5), totalSteps: 10)
    XCTAssertTrue(error(fresh, Data("garbage".utf8)).contains("not a sparsifier state"))
    var json = String(decoding: data, as: UTF8.self)
    json = json.replacingOccurrences(of: "\"steps_completed\":0", with: "\"steps_completed\":-4")
    XCTAssertTrue(error(fresh, Data(json.utf8)).contains("negative step count"))
  }
}
