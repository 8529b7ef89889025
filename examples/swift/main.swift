// A Swift program using Coppice directly: the engine trains a sparse mlp with C-GaP, then a
// Sparsifier drives GaP over weights this program owns (a plain Swift array).
import Coppice

Threads.set(2)
let limit = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1]) ?? 3000 : 3000

// 1. The engine: C-GaP at 90% on the mlp.
let train = try FashionMNIST.load(split: "train", limit: limit)
let test = try FashionMNIST.load(split: "t10k", limit: limit / 3)
var config = TrainingConfig()
config.epochs = 4
var sparsity = SparsityConfig(method: .cgap, sparsity: 0.9)
sparsity.partitions = .balanced(count: 3, by: .flops)
sparsity.gapStepLength = (train.count + config.batchSize - 1) / config.batchSize
sparsity.rounds = 1
let trainer = try Trainer(
  model: ReferenceModel.mlp.build(seed: 1), config: config, sparsity: sparsity)
try trainer.fit(
  train: train, test: test,
  epochEnd: { record in
    print(
      "epoch \(record.epoch): test accuracy \(record.testAccuracy)%, sparsity \(record.sparsity)")
  })

// 2. A Sparsifier over memory this program owns.
var weights = (0..<1000).map { Float($0 % 17) - 8.5 }
try weights.withUnsafeMutableBufferPointer { buffer in
  let target = try SparseTarget(name: "w", shape: [40, 25], weights: buffer.baseAddress!)
  let sparsifier = try Sparsifier(
    targets: [target], config: SparsityConfig(method: .staticSparse, sparsity: 0.75),
    stepsPerEpoch: 10, totalSteps: 10, seed: 0)
  try sparsifier.start()
  for _ in 0..<10 { try sparsifier.step() }
}
let zeros = weights.filter { $0 == 0 }.count
print("host-owned weights: \(zeros) of \(weights.count) are zero")
