import Foundation
import XCTest

@testable import CoppiceEngine
@testable import CoppiceSparsity
@testable import CoppiceTraining

final class TrainingTests: XCTestCase {
  override func setUp() { Threads.set(2) }

  /// A learnable synthetic 10-class problem: each class is a noisy fixed random 28×28 template.
  func syntheticData(count: Int, seed: UInt64) throws -> Dataset {
    var templates = SeededGenerator(seed: 42)
    let protos = (0..<10).map { _ in (0..<784).map { _ in templates.nextNormal() } }
    var rng = SeededGenerator(seed: seed)
    var images: [Float] = []
    var labels: [Int32] = []
    for i in 0..<count {
      let c = i % 10
      images += protos[c].map { $0 + 1.5 * rng.nextNormal() }
      labels.append(Int32(c))
    }
    return try Dataset(images: images, labels: labels, sampleShape: [1, 28, 28], classes: 10)
  }

  func testMLPLearnsSyntheticData() throws {
    let train = try syntheticData(count: 1000, seed: 1)
    let test = try syntheticData(count: 500, seed: 2)
    var config = TrainingConfig()
    config.epochs = 3
    config.batchSize = 50
    config.learningRate = 0.02
    let trainer = try Trainer(model: ReferenceModel.mlp.build(seed: 0), config: config)
    let history = try trainer.fit(train: train, test: test)
    XCTAssertEqual(history.count, 3)
    XCTAssertLessThan(history.last!.loss, history.first!.loss)
    XCTAssertGreaterThan(history.last!.testAccuracy, 80)
  }

  func testMLPOnFashionMNISTSubset() throws {
    let dir = FashionMNIST.defaultDirectory
    guard FileManager.default.fileExists(atPath: dir + "/train-images-idx3-ubyte.gz") else {
      throw XCTSkip("Fashion-MNIST not installed at \(dir)")
    }
    let train = try FashionMNIST.load(split: "train", limit: 3000)
    let test = try FashionMNIST.load(split: "t10k", limit: 1000)
    var config = TrainingConfig()
    config.epochs = 3
    config.learningRate = 0.05
    let trainer = try Trainer(model: ReferenceModel.mlp.build(seed: 0), config: config)
    let before = trainer.evaluate(on: test)
    let history = try trainer.fit(train: train, test: test)
    XCTAssertLessThan(history.last!.loss, history.first!.loss)
    XCTAssertLessThan(history.last!.testLoss, before.loss)
    // Chance is 10%.
    XCTAssertGreaterThan(history.last!.testAccuracy, 70)
  }

  func testTrainingIsReproducibleFromTheSeed() throws {
    let train = try syntheticData(count: 200, seed: 1)
    func run() throws -> [Double] {
      var config = TrainingConfig()
      config.epochs = 2
      config.batchSize = 32
      config.augmentation = Augmentation(cropPadding: 2)
      config.seed = 7
      let trainer = try Trainer(model: ReferenceModel.mlp.build(seed: 7), config: config)
      return try trainer.fit(train: train, test: train).map(\.loss)
    }
    XCTAssertEqual(try run(), try run())
  }

  func testReferenceModelsHaveTheDocumentedShapes() {
    let mlp = ReferenceModel.mlp.build(seed: 0)
    XCTAssertEqual(mlp.parameterCount, 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10)
    let cnn = ReferenceModel.cnn.build(seed: 0)
    XCTAssertEqual(cnn.network.outputShape(for: [2, 1, 28, 28]), [2, 10])
    XCTAssertTrue(cnn.parameters.contains { $0.name == "fc1.weight" && $0.shape == [256, 6272] })
    let resnet = ReferenceModel.resnet20.build(seed: 0)
    XCTAssertEqual(resnet.network.outputShape(for: [2, 1, 28, 28]), [2, 10])
    XCTAssertEqual(resnet.prunableParameters.count, 20)  // 19 convolutions + the classifier
    // Whole-model forward/backward runs for the deepest model.
    let x = randomTensor([2, 1, 28, 28], seed: 1)
    let y = resnet.forward(x, training: true)
    XCTAssertEqual(y.shape, [2, 10])
    resnet.backward(randomTensor([2, 10], seed: 2))
    XCTAssertTrue(
      resnet.parameters.allSatisfy { p in (0..<p.count).allSatisfy { p.grad[$0].isFinite } })
  }

  func testTrainerRejectsMismatchedData() throws {
    let data = try Dataset(
      images: [Float](repeating: 0, count: 8), labels: [0, 1], sampleShape: [1, 2, 2], classes: 2)
    let trainer = try Trainer(model: ReferenceModel.mlp.build(seed: 0), config: TrainingConfig())
    XCTAssertThrowsError(try trainer.fit(train: data, test: data))
  }
}
