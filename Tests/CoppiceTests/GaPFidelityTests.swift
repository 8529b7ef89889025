import Foundation
import XCTest

@testable import CoppiceEngine
@testable import CoppiceSparsity
@testable import CoppiceTraining

/// Issue 16: GaP as the paper and its official code run it.
final class GaPFidelityTests: XCTestCase {
  /// Separable synthetic data on 1×28×28 inputs.
  func data(count: Int, seed: UInt64) throws -> Dataset {
    var rng = SeededGenerator(seed: seed, stream: "gap-data")
    var images: [Float] = []
    var labels: [Int32] = []
    for i in 0..<count {
      let c = i % 10
      for p in 0..<784 { images.append((p % 10 == c ? 1 : 0) + 0.3 * rng.nextNormal()) }
      labels.append(Int32(c))
    }
    return try Dataset(images: images, labels: labels, sampleShape: [1, 28, 28], classes: 10)
  }

  func partitionNames(_ model: ReferenceModel, _ config: SparsityConfig) throws -> [[String]] {
    let targets = model.build(seed: 0).sparseTargets()
    return try Sparsifier.gapPartitions(of: targets, config: config).map {
      $0.map { targets[$0].name }
    }
  }

  // MARK: partitions

  func testResNetPartitionsNeverSplitAResidualBlock() throws {
    for count in [2, 3, 4, 5, 7] {
      var config = SparsityConfig(method: .cgap)
      config.partitions = .balanced(count: count, by: .flops)
      let partitions = try partitionNames(.resnet20, config)
      XCTAssertEqual(partitions.count, count)
      var partitionOfBlock: [String: Int] = [:]
      for (p, names) in partitions.enumerated() {
        for name in names where name.hasPrefix("layer") {
          let block = name.split(separator: ".").prefix(2).joined(separator: ".")
          if let other = partitionOfBlock[block] {
            XCTAssertEqual(other, p, "\(block) split with κ=\(count): \(partitions)")
          }
          partitionOfBlock[block] = p
        }
      }
    }
    // Explicit lists may still split a block.
    var explicit = SparsityConfig(method: .cgap)
    let names = ReferenceModel.resnet20.build(seed: 0).sparseTargets().map(\.name)
    explicit.partitions = .explicit([Array(names.prefix(4)), Array(names.dropFirst(4))])
    XCTAssertEqual(try partitionNames(.resnet20, explicit)[0].last, "layer1.1.conv1.weight")
  }

  func testDenseByDesignLayersAreLeftOutOfThePartitionsAndLogged() throws {
    var config = SparsityConfig(method: .cgap, sparsity: 0.9)
    config.distribution = .erk()
    let targets = ReferenceModel.cnn.build(seed: 0).sparseTargets()
    let s = try Sparsifier(
      targets: targets, config: config, stepsPerEpoch: 10, totalSteps: 100, seed: 1)
    let dense = targets.filter { $0.targetSparsity == 0 }.map(\.name)
    // ERK keeps the 288-weight first conv and the 2560-weight classifier dense.
    XCTAssertEqual(dense, ["conv1.weight", "fc2.weight"])
    let partitioned = s.partitions.joined().map { targets[$0].name }
    XCTAssertFalse(partitioned.contains("conv1.weight"))
    XCTAssertEqual(partitioned.count, targets.count - 2)
    XCTAssertTrue(s.events.contains { $0.contains("left out of the GaP partitions") })
    // keepFirstDense on the mlp: fc1 left out, κ 4 → 2.
    var mlp = SparsityConfig(method: .cgap, sparsity: 0.9)
    mlp.keepFirstDense = true
    XCTAssertEqual(try partitionNames(.mlp, mlp), [["fc2.weight"], ["fc3.weight"]])
  }

  func testLayerUnitsGroupNormsWithTheirConvolution() {
    let units = ReferenceModel.cnn.build(seed: 0).layerUnits
    let conv1 = units.first { $0.weights == ["conv1.weight"] }!
    XCTAssertTrue(conv1.members.contains("bn1.running_mean"))
    XCTAssertTrue(conv1.members.contains("bn1.weight"))
    let block = ReferenceModel.resnet20.build(seed: 0).layerUnits.first {
      $0.weights.contains("layer2.1.conv1.weight")
    }!
    XCTAssertEqual(block.weights, ["layer2.1.conv1.weight", "layer2.1.conv2.weight"])
    XCTAssertTrue(block.members.contains("layer2.1.bn2.running_var"))
  }

  // MARK: ERK with layers kept dense

  func testERKLeavesKeptDenseLayersOutOfTheBudget() throws {
    let s = try SparsityDistribution.erk().sparsities(
      names: ["fc1", "fc2", "fc3"], shapes: [[300, 784], [100, 300], [10, 100]], sparsity: 0.5,
      keepFirstDense: true)
    XCTAssertEqual(s[0], 0)
    XCTAssertEqual(s[2], 0)
    XCTAssertEqual(s[1], 0.5167, accuracy: 1e-3)  // the RigL reference's 0.517
    // Without kept-dense layers nothing changes: the total is exact.
    let all = try SparsityDistribution.erk().sparsities(
      names: ["fc1", "fc2", "fc3"], shapes: [[300, 784], [100, 300], [10, 100]], sparsity: 0.9)
    let zeros = zip(all, [235_200, 30_000, 1000]).reduce(0.0) { $0 + $1.0 * Double($1.1) }
    XCTAssertEqual(zeros, (266_200 * 0.9).rounded(), accuracy: 0.5)
  }

  // MARK: global prunes

  func testGlobalCyclicGaPKeepsTheTotalBudgetExactly() throws {
    var config = SparsityConfig(method: .cgap, sparsity: 0.7)
    config.partitions = .explicit([["l0", "l1"], ["l2"]])
    config.gapStepLength = 3
    config.rounds = 2
    config.gapPrune = .global
    let h = try SparsityHarness(config, totalSteps: 15)
    try h.sparsifier.start()
    h.targets[0].weights.update(repeating: 5, count: 4)  // a few large weights in l0
    for _ in 1...15 { try h.step() }
    XCTAssertTrue(h.sparsifier.masksFrozen)
    let zeros = h.targets.reduce(0) { $0 + $1.count - $1.nonzeros }
    XCTAssertEqual(zeros, h.targets.reduce(0) { $0 + $1.targetZeros })
    let kinds = h.sparsifier.context.structuredEvents.map(\.kind)
    XCTAssertEqual(kinds.filter { $0 == .prune }.count, 3)
    XCTAssertEqual(kinds.last, .finalPrune)
  }

  func testGlobalParallelGaPAssembleRanksAllPartitionsTogether() throws {
    let w0: [Float] = [10, 9, 8, 7]
    let w1: [Float] = [1, 2, 3, 4]
    let assembled = try ParallelGaP.assemble(
      partitions: [[0], [1]], workerWeights: [[w0, []], [[], w1]], counts: [4, 4],
      zeros: [2, 2], global: true)
    XCTAssertEqual(assembled.masks[0], [1, 1, 1, 1])
    XCTAssertEqual(assembled.masks[1], [0, 0, 0, 0])
    let perLayer = try ParallelGaP.assemble(
      partitions: [[0], [1]], workerWeights: [[w0, []], [[], w1]], counts: [4, 4],
      zeros: [2, 2])
    XCTAssertEqual(perLayer.masks[1], [0, 0, 1, 1])
  }

  // MARK: restarts

  func sparseTrainer(
    _ model: ReferenceModel = .mlp, _ edit: (inout SparsityConfig, inout TrainingConfig) -> Void
  ) throws -> Trainer {
    var sparsity = SparsityConfig(method: .cgap, sparsity: 0.8)
    var config = TrainingConfig()
    config.epochs = 4
    config.batchSize = 50
    edit(&sparsity, &config)
    let trainer = try Trainer(model: model.build(seed: 0), config: config, sparsity: sparsity)
    try trainer.prepareSparsity(stepsPerEpoch: 4)
    return trainer
  }

  func testFreshOptimizerStateAtEveryGaPStep() throws {
    let train = try data(count: 200, seed: 1)
    let trainer = try sparseTrainer { s, _ in
      s.gapStepLength = 3
      s.restartOptimizerPerStep = true
    }
    let order = Array(0..<50)
    for step in 1...6 {
      try trainer.trainStep(train: train, indices: order[...])
      let allZero = trainer.optimizer.state.allSatisfy { $0.tensor.array.allSatisfy { $0 == 0 } }
      XCTAssertEqual(allZero, step % 3 == 0, "step \(step)")
    }
  }

  func testLearningRateRestartsWithoutAStepLengthAndWithWarmup() throws {
    // gapStepLength nil: the step length comes from the schedule (75% of 16 steps / 3).
    let trainer = try sparseTrainer { s, c in
      s.restartLearningRatePerStep = true
      c.warmupEpochs = 1
    }
    let length = trainer.sparsifier!.schedule.gapStepLength!
    XCTAssertEqual(length, 4)
    let base = trainer.config.learningRate
    XCTAssertEqual(trainer.learningRate(atStep: 0, totalSteps: 16, batchesPerEpoch: 4), base)
    XCTAssertLessThan(trainer.learningRate(atStep: 3, totalSteps: 16, batchesPerEpoch: 4), base)
    let withWarmup = try sparseTrainer { s, c in
      s.restartLearningRatePerStep = true
      s.restartWarmupPerStep = true
      c.warmupEpochs = 1
    }
    // The second GaP step restarts with a 4-step warm-up: base/4 at its first step.
    XCTAssertEqual(
      withWarmup.learningRate(atStep: length, totalSteps: 16, batchesPerEpoch: 4), base / 4,
      accuracy: 1e-7)
  }

  // MARK: RigL / SET reference update steps

  func testReferenceMaskUpdatesSkipTheOptimizerStepAndFloorTheDropCount() throws {
    let train = try data(count: 200, seed: 2)
    let order = Array(0..<50)
    for reference in [false, true] {
      let trainer = try sparseTrainer { s, _ in
        s.method = .rigl
        s.updateInterval = 2
        s.referenceMaskUpdates = reference
      }
      let bias = trainer.model.parameters.first { $0.name == "fc3.bias" }!
      try trainer.trainStep(train: train, indices: order[...])
      let before = bias.value.array
      XCTAssertEqual(trainer.sparsifier!.skipsOptimizerStep, reference)
      try trainer.trainStep(train: train, indices: order[...])  // an update step
      XCTAssertEqual(bias.value.array == before, reference)
    }
    let timing = DynamicSparseTiming(
      interval: 1, endStep: 100, dropFraction: 0.3, decay: .constant, floorsDropCount: true)
    XCTAssertEqual(timing.dropCount(nonzeros: 15, step: 1), 4)  // 4.5 floored
    let rounded = DynamicSparseTiming(
      interval: 1, endStep: 100, dropFraction: 0.3, decay: .constant)
    XCTAssertEqual(rounded.dropCount(nonzeros: 15, step: 1), 5)
  }

  // MARK: P-GaP merge

  func testPartitionMergeOwnersAndARun() throws {
    let trainer = try sparseTrainer(.cnn) { s, c in
      s.method = .pgap
      s.partitions = .balanced(count: 4, by: .flops)
      s.gapStepLength = 4
      s.pgapMerge = .partition
      c.epochs = 3
    }
    let gap = trainer.sparsifier!.parallelGaP!
    let owners = trainer.tensorOwners(gap, sparsifier: trainer.sparsifier!)
    let byName = Dictionary(
      uniqueKeysWithValues: zip(trainer.stateTensors.map(\.name), owners))
    let conv1 = trainer.sparsifier!.partition(ofTarget: 0)
    XCTAssertNotNil(conv1)
    XCTAssertEqual(byName["bn1.running_mean"]!, conv1)
    XCTAssertEqual(byName["optimizer.bn1.weight.momentum"]!, conv1)
    XCTAssertEqual(byName["fc2.bias"]!, trainer.sparsifier!.partition(ofTarget: 4))
  }

  func testParallelGaPPartitionMergeTrainsToTarget() throws {
    let train = try data(count: 200, seed: 3)
    let test = try data(count: 100, seed: 4)
    var finals: [[Float]] = []
    for merge in [ParallelGaPMerge.average, .partition] {
      var sparsity = SparsityConfig(method: .pgap, sparsity: 0.8)
      sparsity.partitions = .balanced(count: 3, by: .flops)
      sparsity.gapStepLength = 4
      sparsity.pgapMerge = merge
      sparsity.restartOptimizerPerStep = merge == .partition
      var config = TrainingConfig()
      config.epochs = 2
      config.batchSize = 50
      let trainer = try Trainer(
        model: ReferenceModel.mlp.build(seed: 0), config: config, sparsity: sparsity)
      try trainer.fit(train: train, test: test)
      for t in trainer.sparsifier!.targets { XCTAssertEqual(t.count - t.nonzeros, t.targetZeros) }
      finals.append(trainer.model.parameters.first { $0.name == "fc1.bias" }!.value.array)
    }
    XCTAssertNotEqual(finals[0], finals[1])
  }

  // MARK: configuration files

  func testConfigurationsWithoutTheNewKeysStillDecode() throws {
    var config = SparsityConfig(method: .rigl, sparsity: 0.8)
    config.rounds = 3
    var json =
      try JSONSerialization.jsonObject(with: JSONEncoder().encode(config)) as! [String: Any]
    for key in [
      "gapPrune", "pgapMerge", "restartOptimizerPerStep", "restartWarmupPerStep",
      "referenceMaskUpdates",
    ] {
      XCTAssertNotNil(json.removeValue(forKey: key), key)
    }
    let decoded = try JSONDecoder().decode(
      SparsityConfig.self, from: JSONSerialization.data(withJSONObject: json))
    XCTAssertEqual(decoded, config)
  }
}
