// Uses Coppice as a library dependency: builds its own small model from Coppice's layers,
// trains it with C-GaP at 80% sparsity on a synthetic task (is the bright square in the left or
// the right half of a noisy image?) and prints what the kernels run on. No data files needed.
import Coppice

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

Threads.set(2)
print("coppice \(Version.string): \(KernelISA.summary)")

/// `count` 8×8 images of noise with a bright 3×3 square in the left (label 0) or the right
/// (label 1) half; a fixed generator, so every run is the same.
func squares(count: Int, seed: UInt64) throws -> Dataset {
  var state = seed
  func next() -> Float {
    state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
    return Float(state >> 40) / Float(1 << 24)
  }
  var images = [Float](repeating: 0, count: count * 64)
  var labels = [Int32](repeating: 0, count: count)
  for n in 0..<count {
    for p in 0..<64 { images[n * 64 + p] = 0.3 * next() }
    let label = n % 2
    let x0 = label == 0 ? Int(next() * 2) : 4 + Int(next() * 2)
    let y0 = Int(next() * 6)
    for y in y0..<y0 + 3 { for x in x0..<x0 + 3 { images[n * 64 + y * 8 + x] = 1 } }
    labels[n] = Int32(label)
  }
  return try Dataset(images: images, labels: labels, sampleShape: [1, 8, 8], classes: 2)
}

let train = try squares(count: 512, seed: 1)
let test = try squares(count: 256, seed: 2)
var config = TrainingConfig()
config.epochs = 4
config.batchSize = 32
var sparsity = SparsityConfig(method: .cgap, sparsity: 0.8)
sparsity.partitions = .balanced(count: 2, by: .flops)
sparsity.gapStepLength = train.count / config.batchSize
sparsity.rounds = 1
var rng = SeededGenerator(seed: 1)
let model = Model(
  name: "squares", inputShape: [1, 8, 8],
  layers: [
    Flatten(),
    Linear(name: "fc1", inFeatures: 64, outFeatures: 64, rng: &rng), ReLU(),
    Linear(name: "fc2", inFeatures: 64, outFeatures: 2, rng: &rng),
  ])
let trainer = try Trainer(model: model, config: config, sparsity: sparsity)
var accuracy = 0.0
try trainer.fit(
  train: train, test: test,
  epochEnd: { record in
    accuracy = record.testAccuracy
    print(
      "epoch \(record.epoch): test accuracy \(record.testAccuracy)%, sparsity \(record.sparsity)")
  })
guard accuracy > 90 else {
  print("coppice-dependent: test accuracy \(accuracy)% is not above 90%")
  exit(1)
}
print("coppice-dependent: ok")
