import XCTest

@testable import CoppiceEngine
@testable import CoppiceSparsity
@testable import CoppiceTraining

final class OptimizerTests: XCTestCase {
  func parameter(_ values: [Float], decays: Bool = true) -> Parameter {
    Parameter(
      name: "p", value: Tensor(shape: [values.count], values: values), prunable: true,
      decays: decays)
  }

  func testSGDMomentumMatchesHandComputation() {
    let p = parameter([1, -2])
    let sgd = SGD(parameters: [p], learningRate: 0.1, momentum: 0.9, weightDecay: 0.01)
    p.grad.copy(from: Tensor(shape: [2], values: [0.5, 1]))
    sgd.step()
    // g' = g + wd·w = [0.51, 0.98]; v = g'; w = w − lr·v
    XCTAssertEqual(p.value[0], 1 - 0.1 * 0.51, accuracy: 1e-6)
    XCTAssertEqual(p.value[1], -2 - 0.1 * 0.98, accuracy: 1e-6)
    let w0 = p.value[0]
    sgd.step()
    let g2 = 0.5 + 0.01 * w0
    let v2 = 0.9 * 0.51 + g2
    XCTAssertEqual(p.value[0], w0 - 0.1 * v2, accuracy: 1e-6)
  }

  func testNesterovAndNoDecayForBiases() {
    let p = parameter([1], decays: false)
    let sgd = SGD(
      parameters: [p], learningRate: 0.1, momentum: 0.5, weightDecay: 0.5, nesterov: true)
    p.grad[0] = 2
    sgd.step()
    // no decay: g = 2, v = 2, update = g + m·v = 3
    XCTAssertEqual(p.value[0], 1 - 0.1 * 3, accuracy: 1e-6)
  }

  func testResetStateZeroesMomentum() {
    let p = parameter([0, 0])
    let sgd = SGD(parameters: [p], learningRate: 1, momentum: 0.9)
    p.grad.fill(1)
    sgd.step()
    sgd.resetState(of: p, at: [1])
    p.grad.fill(0)
    sgd.step()
    XCTAssertEqual(p.value[0], -1 - 0.9, accuracy: 1e-6)
    XCTAssertEqual(p.value[1], -1, accuracy: 1e-6)
  }

  func testAdamWFirstStepAndDecoupledDecay() {
    let p = parameter([1, 1])
    let adam = AdamW(parameters: [p], learningRate: 0.01, weightDecay: 0.1)
    p.grad.copy(from: Tensor(shape: [2], values: [3, -0.2]))
    adam.step()
    // Bias-corrected first step moves by lr·sign(g) (plus decay lr·wd·w).
    XCTAssertEqual(p.value[0], 1 - 0.01 - 0.01 * 0.1, accuracy: 1e-5)
    XCTAssertEqual(p.value[1], 1 + 0.01 - 0.01 * 0.1, accuracy: 1e-5)
  }

  func testSGDMinimisesAQuadratic() {
    let p = parameter([5, -3])
    let sgd = SGD(parameters: [p], learningRate: 0.1, momentum: 0.9)
    for _ in 0..<200 {
      for i in 0..<2 { p.grad[i] = 2 * p.value[i] }
      sgd.step()
    }
    XCTAssertEqual(p.value[0], 0, accuracy: 1e-3)
    XCTAssertEqual(p.value[1], 0, accuracy: 1e-3)
  }

  func testLearningRateSchedules() {
    let base: Float = 0.1
    XCTAssertEqual(LearningRateSchedule.constant.rate(base: base, step: 50, totalSteps: 100), base)
    let cosine = LearningRateSchedule.cosine(minimum: 0.001)
    XCTAssertEqual(cosine.rate(base: base, step: 0, totalSteps: 100), base, accuracy: 1e-7)
    XCTAssertEqual(
      cosine.rate(base: base, step: 50, totalSteps: 100), (base + 0.001) / 2, accuracy: 1e-6)
    XCTAssertEqual(cosine.rate(base: base, step: 100, totalSteps: 100), 0.001, accuracy: 1e-7)
    let step = LearningRateSchedule.step(stepSize: 10, gamma: 0.5)
    XCTAssertEqual(step.rate(base: base, step: 9, totalSteps: 100), base)
    XCTAssertEqual(step.rate(base: base, step: 10, totalSteps: 100), base / 2)
    XCTAssertEqual(step.rate(base: base, step: 25, totalSteps: 100), base / 4)
    // Warm-up rises linearly to the base, then the decay starts from the base.
    XCTAssertEqual(
      cosine.rate(base: base, step: 0, totalSteps: 100, warmupSteps: 10), base / 10, accuracy: 1e-7)
    XCTAssertEqual(
      cosine.rate(base: base, step: 9, totalSteps: 100, warmupSteps: 10), base, accuracy: 1e-7)
    XCTAssertEqual(
      cosine.rate(base: base, step: 10, totalSteps: 100, warmupSteps: 10), base, accuracy: 1e-7)
  }

  func testConfigValidationNamesTheField() {
    var c = TrainingConfig()
    c.learningRate = .nan
    XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("learning rate")) }
    c = TrainingConfig()
    c.batchSize = 0
    XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("batch size")) }
  }

  /// Counts near 2^62 trapped in step arithmetic (epochs × steps per epoch, batch rounding);
  /// every count has a bound, and 0 epochs is refused as the C ABI refuses it.
  func testConfigBoundsKeepStepArithmeticFromOverflowing() {
    let huge = 1 << 62
    let cases: [(String, (inout TrainingConfig) -> Void)] = [
      ("epochs", { $0.epochs = 0 }), ("epochs", { $0.epochs = huge }),
      ("batch size", { $0.batchSize = huge }), ("warmup epochs", { $0.warmupEpochs = huge }),
      ("evaluation batch size", { $0.evalBatchSize = Int.max }),
      ("crop padding", { $0.augmentation = Augmentation(cropPadding: huge) }),
      ("step schedule", { $0.schedule = .step(stepSize: huge, gamma: 0.1) }),
      ("step schedule", { $0.schedule = .step(stepSize: 10, gamma: .nan) }),
    ]
    for (field, change) in cases {
      var c = TrainingConfig()
      change(&c)
      XCTAssertThrowsError(try c.validate(), field) {
        XCTAssertTrue("\($0)".contains(field), "\(field): \($0)")
      }
    }
    var s = SparsityConfig(method: .cgap)
    s.gapStepLength = huge
    XCTAssertThrowsError(try s.validate()) { XCTAssertTrue("\($0)".contains("GaP step length")) }
    s = SparsityConfig(method: .oneshot)
    s.pruneStep = huge
    XCTAssertThrowsError(try s.validate()) { XCTAssertTrue("\($0)".contains("prune step")) }
    s = SparsityConfig(method: .gmp)
    s.pruningFrequency = Int.max
    XCTAssertThrowsError(try s.validate()) { XCTAssertTrue("\($0)".contains("frequency")) }
  }
}

/// Updating only a sparse layer's kept weights (`updateOnly`) gives bit for bit what the full
/// update gives while pruned weights, gradients and state are zero; the trainer hands the
/// optimizer those positions (`KeptWeightUpdates`).
final class KeptWeightUpdateTests: XCTestCase {
  /// A weight tensor (more weights than one parallel chunk) with ~70% of positions pruned.
  func maskedWeights(count: Int, seed: UInt64) -> (values: [Float], kept: [Int32]) {
    var rng = SeededGenerator(seed: seed, stream: "weights")
    var values = [Float](repeating: 0, count: count)
    var kept: [Int32] = []
    for i in 0..<count where Float.random(in: 0..<1, using: &rng) < 0.3 {
      values[i] = Float.random(in: -1..<1, using: &rng)
      kept.append(Int32(i))
    }
    return (values, kept)
  }

  /// Five steps of `make`'s optimizer over the full tensor and over the kept positions only,
  /// with fresh gradients (zero at pruned positions) each step: the weights must be equal.
  func checkKeptOnly(
    _ make: ([Parameter]) -> Optimizer, file: StaticString = #filePath,
    line: UInt = #line
  ) {
    let count = 70_001
    let (values, kept) = maskedWeights(count: count, seed: 5)
    let full = Parameter(
      name: "w", value: Tensor(shape: [count], values: values), prunable: true, decays: true)
    let restricted = Parameter(
      name: "w", value: Tensor(shape: [count], values: values), prunable: true, decays: true)
    let a = make([full])
    let b = make([restricted])
    b.updateOnly(restricted, at: kept)
    var rng = SeededGenerator(seed: 9, stream: "gradients")
    for _ in 0..<5 {
      full.grad.zero()
      for i in kept { full.grad[Int(i)] = Float.random(in: -1..<1, using: &rng) }
      restricted.grad.copy(from: full.grad)
      a.step()
      b.step()
    }
    XCTAssertEqual(
      (0..<count).map { full.value[$0] }, (0..<count).map { restricted.value[$0] }, file: file,
      line: line)
    XCTAssertTrue((0..<count).contains { full.value[$0] != values[$0] }, file: file, line: line)
  }

  func testSGDOverKeptWeightsEqualsTheFullUpdate() {
    checkKeptOnly { SGD(parameters: $0, learningRate: 0.1, momentum: 0.9, weightDecay: 5e-4) }
    checkKeptOnly {
      SGD(parameters: $0, learningRate: 0.05, momentum: 0.9, weightDecay: 1e-3, nesterov: true)
    }
    checkKeptOnly { SGD(parameters: $0, learningRate: 0.1, momentum: 0, weightDecay: 0) }
  }

  func testAdamWOverKeptWeightsEqualsTheFullUpdate() {
    checkKeptOnly { AdamW(parameters: $0, learningRate: 1e-3, weightDecay: 0.01) }
  }

  func testUpdateOnlyNilUpdatesEveryWeightAgain() {
    let p = Parameter(
      name: "w", value: Tensor(shape: [3], values: [1, 2, 3]), prunable: true, decays: false)
    let sgd = SGD(parameters: [p], learningRate: 1, momentum: 0)
    p.grad.fill(1)
    sgd.updateOnly(p, at: [1])
    sgd.step()
    XCTAssertEqual([p.value[0], p.value[1], p.value[2]], [1, 1, 3])
    sgd.updateOnly(p, at: nil)
    sgd.step()
    XCTAssertEqual([p.value[0], p.value[1], p.value[2]], [0, 0, 2])
  }

  /// Records what `KeptWeightUpdates` hands the optimizer.
  final class RecordingOptimizer: Optimizer {
    var learningRate: Float = 0
    var stepCount: Int64 = 0
    var positions: [ObjectIdentifier: [Int32]?] = [:]
    var calls = 0
    func step() {}
    func resetState(of parameter: Parameter, at indices: [Int]) {}
    func updateOnly(_ parameter: Parameter, at positions: [Int32]?) {
      self.positions[ObjectIdentifier(parameter)] = .some(positions)
      calls += 1
    }
    var state: [(name: String, tensor: Tensor)] { [] }
  }

  func testTrainerRestrictsSparseLayersToTheirKeptWeights() throws {
    let model = ReferenceModel.mlp.build(seed: 1)
    let targets = model.sparseTargets()
    let s = try Sparsifier(
      targets: targets, config: SparsityConfig(method: .staticSparse, sparsity: 0.9),
      stepsPerEpoch: 10, totalSteps: 100, seed: 1)
    try s.start()
    s.reappliesMasks = false
    let optimizer = RecordingOptimizer()
    let updates = KeptWeightUpdates()
    updates.refresh(s, optimizer: optimizer)
    for t in targets {
      let kept = (0..<t.count).filter { t.mask[$0] != 0 }.map { Int32($0) }
      XCTAssertEqual(optimizer.positions[ObjectIdentifier(t.parameter!)], .some(kept), t.name)
    }
    // Nothing changed: no new lists. A new mask: a new list for that target only.
    let calls = optimizer.calls
    updates.refresh(s, optimizer: optimizer)
    XCTAssertEqual(optimizer.calls, calls)
    var mask = targets[0].mask
    let grown = mask.firstIndex(of: 0)!
    mask[grown] = 1
    try targets[0].replaceMask(with: mask)
    updates.refresh(s, optimizer: optimizer)
    XCTAssertEqual(optimizer.calls, calls + 1)
    let list = optimizer.positions[ObjectIdentifier(targets[0].parameter!)]!!
    XCTAssertTrue(list.contains(Int32(grown)))
    // Masks re-applied after full updates (state kept across mask changes, P-GaP): no lists.
    s.reappliesMasks = true
    updates.refresh(s, optimizer: optimizer)
    for t in targets {
      XCTAssertEqual(optimizer.positions[ObjectIdentifier(t.parameter!)], .some(nil), t.name)
    }
  }
}
