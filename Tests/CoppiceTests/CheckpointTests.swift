import Foundation
import XCTest

@testable import CoppiceEngine
@testable import CoppiceSparsity
@testable import CoppiceTraining

/// Checkpoints: exact resume for every kind of schedule state, damaged files, full disks,
/// divergence, and the sparse export.
final class CheckpointTests: XCTestCase {
  override func setUp() { Threads.set(2) }

  var directory: URL!

  override func setUpWithError() throws {
    directory = FileManager.default.temporaryDirectory.appendingPathComponent(
      "coppice-ckpt-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
  }

  override func tearDownWithError() throws {
    try? FileManager.default.removeItem(at: directory)
  }

  /// conv + BN + pool + dropout + two linear layers: parameters, running statistics, dropout
  /// draws and three sparse targets.
  func makeModel() -> Model {
    var rng = SeededGenerator(seed: 3)
    return Model(
      name: "tiny", inputShape: [1, 12, 12],
      layers: [
        Conv2d(name: "conv", inChannels: 1, outChannels: 8, kernelSize: 3, padding: 1, rng: &rng),
        BatchNorm2d(name: "bn", channels: 8, relu: true), MaxPool2d(kernelSize: 2), Flatten(),
        Dropout(p: 0.1, seed: 5),
        Linear(name: "fc1", inFeatures: 288, outFeatures: 32, rng: &rng), ReLU(),
        Linear(name: "fc2", inFeatures: 32, outFeatures: 10, rng: &rng),
      ])
  }

  func data(count: Int, seed: UInt64) throws -> Dataset {
    var rng = SeededGenerator(seed: seed)
    var images: [Float] = []
    var labels: [Int32] = []
    for i in 0..<count {
      let c = i % 10
      images += (0..<144).map { Float(($0 * (c + 1)) % 7) * 0.3 + rng.nextNormal() }
      labels.append(Int32(c))
    }
    return try Dataset(images: images, labels: labels, sampleShape: [1, 12, 12], classes: 10)
  }

  static let stepsPerEpoch = 6  // 96 samples, batch 16

  func sparsityConfig(_ method: SparsityMethod) -> SparsityConfig? {
    var c = SparsityConfig(method: method, sparsity: 0.8)
    switch method {
    case .dense: return nil
    case .cgap, .pgap:
      c.partitions = .balanced(count: 2, by: .flops)
      c.gapStepLength = Self.stepsPerEpoch
      c.rounds = method == .cgap ? 1 : 2
    case .rigl, .set:
      c.updateInterval = 4
    case .gmp:
      c.pruningBeginStep = 2
      c.pruningEndStep = 16
      c.pruningFrequency = 3
    case .oneshot:
      c.pruneStep = 8
    default: break
    }
    return c
  }

  func makeTrainer(_ method: SparsityMethod) throws -> Trainer {
    var config = TrainingConfig()
    config.epochs = 4
    config.batchSize = 16
    config.learningRate = 0.05
    config.seed = 11
    return try Trainer(model: makeModel(), config: config, sparsity: sparsityConfig(method))
  }

  /// Everything that must be bit-identical after a resume.
  struct Outcome: Equatable {
    var tensors: [[Float]]
    var masks: [[UInt8]]
    var steps: Int
    var metrics: [[Double]]
    var phases: [String]
  }

  func outcome(_ t: Trainer) -> Outcome {
    Outcome(
      tensors: t.model.parameters.map(\.value.array) + t.model.buffers.map(\.tensor.array)
        + t.optimizer.state.map(\.tensor.array),
      masks: t.sparsifier?.targets.map(\.mask) ?? [],
      steps: t.stepsTaken,
      metrics: t.history.map {
        [
          Double($0.epoch), $0.loss, $0.trainAccuracy, $0.testAccuracy, $0.testLoss, $0.sparsity,
          $0.trainFLOPs, $0.inferenceFLOPs, Double($0.learningRate),
        ]
      },
      phases: t.history.map(\.phase))
  }

  /// Trains to the end uninterrupted, then again stopping after each count of `stops` steps
  /// (counted per `fit`), saving, and continuing in a new trainer from the file.
  func checkResume(_ method: SparsityMethod, stops: [Int]) throws {
    let train = try data(count: 96, seed: 1)
    let test = try data(count: 40, seed: 2)
    let reference = try makeTrainer(method)
    try reference.fit(train: train, test: test)
    XCTAssertFalse(reference.wasInterrupted)

    let path = directory.appendingPathComponent("\(method.rawValue).safetensors").path
    var trainer = try makeTrainer(method)
    for stop in stops {
      var calls = 0
      try trainer.fit(
        train: train, test: test,
        shouldStop: {
          calls += 1
          return calls == stop
        })
      XCTAssertTrue(trainer.wasInterrupted, "\(method) should stop after \(stop) steps")
      try trainer.saveCheckpoint(path: path)
      let saved = outcome(trainer)
      trainer = try makeTrainer(method)
      try trainer.restoreCheckpoint(path: path, stepsPerEpoch: Self.stepsPerEpoch)
      // The new trainer holds exactly the saved state (not a fresh start that happens to
      // end the same way).
      let restored = outcome(trainer)
      XCTAssertEqual(restored.steps, saved.steps, "\(method): restored step")
      XCTAssertEqual(restored.metrics, saved.metrics, "\(method): restored history")
      XCTAssertEqual(restored.masks, saved.masks, "\(method): restored masks")
      XCTAssertTrue(restored.tensors == saved.tensors, "\(method): restored tensors differ")
    }
    let stepsBefore = trainer.stepsTaken
    XCTAssertGreaterThan(stepsBefore, 0, "\(method): the last checkpoint is at the start")
    var batchesRun = 0
    try trainer.fit(train: train, test: test, progress: { _ in batchesRun += 1 })
    if method != .pgap {  // P-GaP redoes a round stopped part-way
      XCTAssertEqual(
        batchesRun, reference.stepsTaken - stepsBefore, "\(method): the resumed run redid work")
    }
    XCTAssertFalse(trainer.wasInterrupted)
    let a = outcome(reference)
    let b = outcome(trainer)
    XCTAssertEqual(a.steps, b.steps, "\(method): steps")
    XCTAssertEqual(a.metrics, b.metrics, "\(method): per-epoch metrics")
    XCTAssertEqual(a.phases, b.phases, "\(method): phases")
    XCTAssertEqual(a.masks, b.masks, "\(method): masks")
    XCTAssertTrue(
      a.tensors == b.tensors, "\(method): weights, statistics or optimizer state differ")
  }

  // Stops at step 5 (mid-epoch, before the first GaP step boundary at 6 and the RigL update
  // at 8), then 5 steps later (step 10, past both), then finishes.
  func testResumeIsExactForDense() throws { try checkResume(.dense, stops: [5, 5]) }
  func testResumeIsExactForCGaP() throws { try checkResume(.cgap, stops: [5, 5]) }
  func testResumeIsExactForRigL() throws { try checkResume(.rigl, stops: [5, 5]) }
  func testResumeIsExactForSET() throws { try checkResume(.set, stops: [7]) }
  func testResumeIsExactForStatic() throws { try checkResume(.staticSparse, stops: [5, 5]) }
  /// One-shot pruning at step 8, between the two stops.
  func testResumeIsExactForOneShot() throws { try checkResume(.oneshot, stops: [5, 5]) }
  /// GMP prunes every 3 steps from step 2 to 16: stops at 5 and 10 fall between prunings.
  func testResumeIsExactForGMP() throws { try checkResume(.gmp, stops: [5, 5]) }
  /// P-GaP stops inside rounds (in round 1, then in round 2): the round is rolled back and
  /// redone after the resume.
  func testResumeIsExactForPGaP() throws { try checkResume(.pgap, stops: [3, 14]) }

  func testCheckpointAtEveryStepBoundaryOfAnEpochResumesExactly() throws {
    for stop in [1, 6, 7] { try checkResume(.cgap, stops: [stop]) }
  }

  // MARK: Damage and mismatches

  func savedCheckpoint(_ method: SparsityMethod = .cgap, steps: Int = 8) throws -> (
    path: String, trainer: Trainer
  ) {
    let trainer = try makeTrainer(method)
    var calls = 0
    try trainer.fit(
      train: try data(count: 96, seed: 1), test: try data(count: 40, seed: 2),
      shouldStop: {
        calls += 1
        return calls == steps
      })
    let path = directory.appendingPathComponent("c.safetensors").path
    try trainer.saveCheckpoint(path: path)
    return (path, trainer)
  }

  func assertRestoreFails(
    _ path: String, method: SparsityMethod = .cgap, config: ((inout TrainingConfig) -> Void)? = nil,
    stepsPerEpoch: Int = CheckpointTests.stepsPerEpoch, mentions: String,
    file: StaticString = #filePath, line: UInt = #line
  ) throws {
    var trainer = try makeTrainer(method)
    if let config {
      var c = trainer.config
      config(&c)
      trainer = try Trainer(model: makeModel(), config: c, sparsity: sparsityConfig(method))
    }
    let before = outcome(trainer)
    XCTAssertThrowsError(
      try trainer.restoreCheckpoint(path: path, stepsPerEpoch: stepsPerEpoch), file: file,
      line: line
    ) { error in
      XCTAssertTrue(
        "\(error)".contains(mentions), "error '\(error)' should mention '\(mentions)'",
        file: file, line: line)
    }
    XCTAssertEqual(trainer.stepsTaken, 0, file: file, line: line)
    XCTAssertTrue(
      outcome(trainer).tensors == before.tensors, "a failed restore changed weights", file: file,
      line: line)
  }

  func testFlippedByteInDataFailsTheChecksum() throws {
    let (path, _) = try savedCheckpoint()
    var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
    bytes[bytes.count - 100] ^= 0x40
    try bytes.write(to: URL(fileURLWithPath: path))
    try assertRestoreFails(path, mentions: "checksum mismatch")
  }

  func testTruncatedCheckpointsGiveClearErrors() throws {
    let (path, _) = try savedCheckpoint()
    let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
    let headerLength = Int(bytes.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
    for cut in [0, 4, 8, 9, 8 + headerLength / 2, 8 + headerLength, bytes.count - 1] {
      try bytes.prefix(cut).write(to: URL(fileURLWithPath: path))
      XCTAssertThrowsError(try makeTrainer(.cgap).restoreCheckpoint(path: path, stepsPerEpoch: 6)) {
        error in
        guard case CoppiceError.invalidFile(_, let reason) = error else {
          return XCTFail("cut at \(cut): \(error)")
        }
        XCTAssertFalse(reason.isEmpty)
      }
    }
  }

  func testMismatchedRunsAreRefusedByName() throws {
    let (path, _) = try savedCheckpoint()
    try assertRestoreFails(path, config: { $0.learningRate = 0.1 }, mentions: "learningRate")
    try assertRestoreFails(path, method: .rigl, mentions: "sparsity configuration differs")
    try assertRestoreFails(path, stepsPerEpoch: 7, mentions: "batches per epoch")
    try assertRestoreFails(path, method: .dense, mentions: "sparsity configuration differs")
  }

  func testWrongKindAndVersionAreRefused() throws {
    let path = directory.appendingPathComponent("m.safetensors").path
    try makeModel().save(path: path)
    try assertRestoreFails(path, mentions: "model file, a checkpoint is needed")
    let (ckpt, _) = try savedCheckpoint()
    var (entries, metadata) = try SafeTensors.read(path: ckpt)
    metadata["checkpoint_version"] = "99"
    try CoppiceFile.encode(Array(entries.values), metadata: metadata).write(
      to: URL(fileURLWithPath: ckpt))
    try assertRestoreFails(ckpt, mentions: "version 99 is not supported")
    metadata["checkpoint_version"] = "1"
    metadata["trainer_state"] = "{\"steps_taken\": -1}"
    entries["conv.weight"]!.bytes[0] ^= 1
    try CoppiceFile.encode(Array(entries.values), metadata: metadata).write(
      to: URL(fileURLWithPath: ckpt))
    try assertRestoreFails(ckpt, mentions: "trainer_state is malformed")
  }

  func testForgedStateAndShapesAreRejectedWithoutCrashing() throws {
    let (ckpt, _) = try savedCheckpoint(steps: 3)  // mid-epoch: an epoch in progress
    var (entries, metadata) = try SafeTensors.read(path: ckpt)
    var state =
      try JSONSerialization.jsonObject(with: Data(metadata["trainer_state"]!.utf8))
      as! [String: Any]
    var progress = state["epoch_in_progress"] as! [String: Any]
    progress["batchesDone"] = 1_000_000
    state["epoch_in_progress"] = progress
    metadata["trainer_state"] = String(
      decoding: try JSONSerialization.data(withJSONObject: state), as: UTF8.self)
    try CoppiceFile.encode(Array(entries.values), metadata: metadata).write(
      to: URL(fileURLWithPath: ckpt))
    try assertRestoreFails(ckpt, mentions: "malformed epoch in progress")

    let export = directory.appendingPathComponent("e.safetensors").path
    try SparseExport.write(try savedCheckpoint(steps: 20).trainer.model, to: export)
    (entries, metadata) = try SafeTensors.read(path: export)
    for shape in ["[1, 1099511627776]", "[-1, 4]", "[9223372036854775807, 2]", "[]", "nonsense"] {
      metadata["fc1.weight.csr.shape"] = shape
      try CoppiceFile.encode(Array(entries.values), metadata: metadata).write(
        to: URL(fileURLWithPath: export))
      XCTAssertThrowsError(try FileInspection(path: export), shape) { error in
        XCTAssertTrue("\(error)".contains("fc1.weight"), "\(shape): \(error)")
      }
    }
  }

  /// Counters near Int64.max (which trapped on the next step) and forged histories (epoch
  /// 2^62 of 4, a negative epoch) are rejected on restore, in the trainer's and in the
  /// sparsifier's state.
  func testHugeCountersAndForgedHistoriesAreRejected() throws {
    let (ckpt, _) = try savedCheckpoint(steps: 8)  // one epoch done, one in progress
    let (entries, original) = try SafeTensors.read(path: ckpt)
    func forge(_ key: String, _ change: (inout [String: Any]) -> Void) throws {
      var object =
        try JSONSerialization.jsonObject(with: Data(original[key]!.utf8)) as! [String: Any]
      change(&object)
      var metadata = original
      metadata[key] = String(
        decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self)
      try CoppiceFile.encode(Array(entries.values), metadata: metadata).write(
        to: URL(fileURLWithPath: ckpt))
    }
    let huge = Int64.max
    for key in ["steps_taken", "optimizer_steps", "images_seen"] {
      for value: Int64 in [huge, huge - 1, key == "images_seen" ? (1 << 62) + 1 : 1 << 41, -1] {
        try forge("trainer_state") { $0[key] = NSNumber(value: value) }
        try assertRestoreFails(ckpt, mentions: "malformed counters")
      }
    }
    try forge("trainer_state") { $0["dropout_calls"] = [NSNumber(value: UInt64.max)] }
    try assertRestoreFails(ckpt, mentions: "malformed dropout calls")
    try forge("trainer_state") { $0["train_seconds"] = -5 }
    try assertRestoreFails(ckpt, mentions: "malformed counters")
    for epoch in [Int64(1) << 62, -1, 0, 5] {
      try forge("trainer_state") {
        var history = $0["history"] as! [[String: Any]]
        history[0]["epoch"] = NSNumber(value: epoch)
        $0["history"] = history
      }
      try assertRestoreFails(ckpt, mentions: "history records epoch \(epoch)")
    }
    try forge("trainer_state") {
      var progress = $0["epoch_in_progress"] as! [String: Any]
      var run = progress["run"] as! [String: Any]
      run["seen"] = NSNumber(value: huge)
      progress["run"] = run
      $0["epoch_in_progress"] = progress
    }
    try assertRestoreFails(ckpt, mentions: "malformed epoch in progress")
    for steps in [huge, Int64(1) << 41] {
      try forge("sparsifier_state") { $0["steps_completed"] = NSNumber(value: steps) }
      try assertRestoreFails(ckpt, mentions: "step count \(steps) is outside")
    }
  }

  func testCheckpointLoadsAsAModelWithItsMasks() throws {
    let (path, trainer) = try savedCheckpoint()
    let model = makeModel()
    try model.load(path: path)
    for (a, b) in zip(trainer.model.parameters, model.parameters) {
      XCTAssertEqual(a.value.array, b.value.array, a.name)
    }
    XCTAssertEqual(model.loadedMasks.map(\.mask), trainer.sparsifier!.targets.map(\.mask))
  }

  // MARK: Directory, full disk, divergence

  func testDirectoryKeepsTheNewestAndSkipsDamagedOnes() throws {
    let store = try CheckpointDirectory(path: directory.path + "/run", keep: 2)
    let trainer = try makeTrainer(.rigl)
    let train = try data(count: 96, seed: 1)
    let test = try data(count: 40, seed: 2)
    for _ in 0..<3 {
      var calls = 0
      try trainer.fit(
        train: train, test: test,
        shouldStop: {
          calls += 1
          return calls == 4
        })
      try store.save(trainer)
    }
    XCTAssertEqual(store.checkpoints().map(\.step), [8, 12])
    // Damage the newest: resume falls back to the older one and says so.
    let newest = store.checkpoints().last!.path
    try Data("garbage".utf8).write(to: URL(fileURLWithPath: newest))
    var warnings: [String] = []
    let resumed = try makeTrainer(.rigl)
    let used = try store.resume(resumed, stepsPerEpoch: 6, warn: { warnings.append($0) })
    XCTAssertEqual(used, store.checkpoints().first!.path)
    XCTAssertEqual(resumed.stepsTaken, 8)
    XCTAssertEqual(warnings.count, 1)
    XCTAssertTrue(warnings[0].contains("skipping damaged checkpoint"))
    // A directory and a FIFO under newer checkpoint names are not checkpoints: resume passes
    // them by, and a save's pruning leaves them alone.
    let fake = store.path + "/checkpoint-000000099.safetensors"
    try FileManager.default.createDirectory(atPath: fake, withIntermediateDirectories: false)
    XCTAssertEqual(mkfifo(store.path + "/checkpoint-000000098.safetensors", 0o600), 0)
    XCTAssertEqual(store.checkpoints().map(\.step), [8, 12])
    let again = try makeTrainer(.rigl)
    XCTAssertEqual(try store.resume(again, stepsPerEpoch: 6), store.checkpoints().first!.path)
    try store.save(again)
    var isDirectory: ObjCBool = false
    XCTAssertTrue(FileManager.default.fileExists(atPath: fake, isDirectory: &isDirectory))
    XCTAssertTrue(isDirectory.boolValue)
  }

  /// A checkpoint directory belongs to one run: a second run fails while the first holds the
  /// lock, a fresh run refuses a directory holding checkpoints (nothing is deleted), and a save
  /// never prunes the checkpoint it has just written, even next to a higher-step file.
  func testADirectoryBelongsToOneRun() throws {
    let path = directory.path + "/owned"
    let train = try data(count: 96, seed: 1)
    let test = try data(count: 40, seed: 2)
    func makeRun(resume: Bool) throws -> TrainingRun {
      let t = try makeTrainer(.cgap)
      var config = t.config
      config.epochs = 2
      return try TrainingRun(
        model: makeModel(), config: config, sparsity: sparsityConfig(.cgap), trainCount: 96,
        checkpoints: .init(
          directory: try CheckpointDirectory(path: path, keep: 1), resume: resume))
    }
    do {
      let held = try CheckpointDirectory(path: path).lock()
      XCTAssertThrowsError(try makeRun(resume: false).run(train: train, test: test)) {
        XCTAssertTrue("\($0)".contains("is in use by another run (process \(getpid()))"), "\($0)")
      }
      withExtendedLifetime(held) {}
    }
    XCTAssertEqual(try makeRun(resume: false).run(train: train, test: test), .finished)
    let store = try CheckpointDirectory(path: path)
    let written = store.checkpoints()
    XCTAssertEqual(written.map(\.step), [12])
    let bytes = try Data(contentsOf: URL(fileURLWithPath: written[0].path))
    XCTAssertThrowsError(try makeRun(resume: false).run(train: train, test: test)) {
      XCTAssertTrue("\($0)".contains("already holds checkpoints"), "\($0)")
    }
    XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: written[0].path)), bytes)
    XCTAssertEqual(try makeRun(resume: true).run(train: train, test: test), .finished)

    // keep 1 next to a newer file: the fresh checkpoint stays, the other goes.
    let other = path + "/checkpoint-000000999.safetensors"
    try Data("older run".utf8).write(to: URL(fileURLWithPath: other))
    let (_, trainer) = try savedCheckpoint()
    let fresh = try CheckpointDirectory(path: path, keep: 1).save(trainer)
    XCTAssertEqual(store.checkpoints().map(\.path), [fresh])
  }

  func testFullDiskLeavesThePreviousCheckpointIntact() throws {
    let store = try CheckpointDirectory(path: directory.path + "/full", keep: 3)
    let (_, trainer) = try savedCheckpoint()
    let first = try store.save(trainer)
    _ = try trainer.trainStep(train: try data(count: 96, seed: 1), indices: Array(0..<16)[...])
    // A file-size limit makes the write fail part-way, as a full disk does.
    signal(SIGXFSZ, SIG_IGN)
    var old = rlimit()
    getrlimit(Int32(RLIMIT_FSIZE.rawValue), &old)
    var limit = old
    limit.rlim_cur = 64 * 1024
    setrlimit(Int32(RLIMIT_FSIZE.rawValue), &limit)
    XCTAssertThrowsError(try store.save(trainer)) { error in
      XCTAssertTrue("\(error)".contains("cannot write"), "\(error)")
    }
    setrlimit(Int32(RLIMIT_FSIZE.rawValue), &old)
    let names = try FileManager.default.contentsOfDirectory(atPath: store.path)
    XCTAssertEqual(names, [URL(fileURLWithPath: first).lastPathComponent], "no partial files")
    let restored = try makeTrainer(.cgap)
    try restored.restoreCheckpoint(path: first, stepsPerEpoch: 6)
    XCTAssertEqual(restored.stepsTaken, 8)
  }

  func testDivergenceStopsTrainingAndIsNeverCheckpointed() throws {
    let (_, trainer) = try savedCheckpoint()
    trainer.model.parameters[0].value[0] = .nan
    XCTAssertThrowsError(try trainer.checkpointData()) { error in
      XCTAssertTrue("\(error)".contains("NaN"), "\(error)")
    }
    XCTAssertThrowsError(
      try trainer.fit(train: try data(count: 96, seed: 1), test: try data(count: 40, seed: 2))
    ) { error in
      XCTAssertTrue("\(error)".contains("diverged"), "\(error)")
    }
  }

  // MARK: Sparse export

  func testSparseExportRoundTripsAndRunsSparse() throws {
    let (_, trainer) = try savedCheckpoint(.cgap, steps: 20)
    let path = directory.appendingPathComponent("e.safetensors").path
    let summary = try SparseExport.write(trainer.model, to: path)
    XCTAssertEqual(summary.sparseWeights, 3)
    XCTAssertLessThan(summary.bytes, summary.denseBytes / 2)
    let copy = makeModel()
    try copy.load(path: path)
    for (a, b) in zip(trainer.model.parameters, copy.parameters) {
      XCTAssertEqual(a.value.array, b.value.array, a.name)
    }
    XCTAssertEqual(copy.loadedMasks.count, 3)
    let fc1 = copy.weightLayers.compactMap { $0 as? Linear }.first!
    XCTAssertNotNil(fc1.maskSource)
    let x = randomTensor([5, 1, 12, 12], seed: 9)
    SparseDispatch.mode = .alwaysSparse
    let sparse = copy.forward(x, training: false).array
    SparseDispatch.mode = .alwaysDense
    let dense = trainer.model.forward(x, training: false).array
    SparseDispatch.mode = .automatic
    for (a, b) in zip(sparse, dense) { XCTAssertEqual(a, b, accuracy: 1e-4) }
    let info = try FileInspection(path: path)
    XCTAssertEqual(info.kind, "sparse-export")
    XCTAssertEqual(info.tensors.filter { $0.storage == "CSR" }.count, 3)
  }

  func testCorruptCSRIsRejected() throws {
    let (_, trainer) = try savedCheckpoint(.cgap, steps: 20)
    let path = directory.appendingPathComponent("e.safetensors").path
    try SparseExport.write(trainer.model, to: path)
    var (entries, metadata) = try SafeTensors.read(path: path)
    var indices = entries["fc1.weight.csr.indices"]!.uint16s
    indices[0] = 5000
    entries["fc1.weight.csr.indices"] = .init(
      name: "fc1.weight.csr.indices", shape: [indices.count], uint16: indices)
    try CoppiceFile.encode(Array(entries.values), metadata: metadata).write(
      to: URL(fileURLWithPath: path))
    XCTAssertThrowsError(try makeModel().load(path: path)) { error in
      XCTAssertTrue("\(error)".contains("column index 5000"), "\(error)")
    }
    metadata["model"] = "other"
    try CoppiceFile.encode(Array(entries.values), metadata: metadata).write(
      to: URL(fileURLWithPath: path))
    XCTAssertThrowsError(try makeModel().load(path: path)) { error in
      XCTAssertTrue("\(error)".contains("holds model 'other'"), "\(error)")
    }
  }

  /// Row pointers that rise past the values and fall back ([0, 6, 5, 5, …] with 5 values) are
  /// rejected before any index is read through them, with or without a checksum entry (a
  /// forged file used to send the row loop out of bounds and crash every loader).
  func testCSRRowPointersPastTheValuesAreRejected() throws {
    let (_, trainer) = try savedCheckpoint(.cgap, steps: 20)
    let path = directory.appendingPathComponent("e.safetensors").path
    try SparseExport.write(trainer.model, to: path)
    var (entries, metadata) = try SafeTensors.read(path: path)
    // Five values in increasing columns, claimed by row 0 as six.
    let nnz = 5
    let rows = entries["fc1.weight.csr.indptr"]!.shape[0] - 1
    let indptr = [0, 6] + [Int32](repeating: 5, count: rows - 1)
    entries["fc1.weight.csr.indptr"] = .init(
      name: "fc1.weight.csr.indptr", shape: [rows + 1], int32: indptr)
    entries["fc1.weight.csr.indices"] = .init(
      name: "fc1.weight.csr.indices", shape: [nnz], uint16: [0, 1, 2, 3, 4])
    [Float](repeating: 0.5, count: nnz).withUnsafeBufferPointer {
      entries["fc1.weight.csr.values"] = .init(
        name: "fc1.weight.csr.values", shape: [nnz], floats: $0)
    }
    for withChecksum in [true, false] {
      metadata.removeValue(forKey: "checksum")
      let data =
        withChecksum
        ? try CoppiceFile.encode(Array(entries.values), metadata: metadata)
        : try SafeTensors.encode(Array(entries.values), metadata: metadata)
      try data.write(to: URL(fileURLWithPath: path))
      XCTAssertThrowsError(try makeModel().load(path: path)) { error in
        XCTAssertTrue("\(error)".contains("past the \(nnz) values"), "\(error)")
      }
      XCTAssertThrowsError(try FileInspection(path: path)) { error in
        XCTAssertTrue("\(error)".contains("fc1.weight"), "\(error)")
      }
    }
  }
}
