// coppice_model_*, coppice_dataset_*, coppice_train/evaluate/predict: the built-in engine.
import CCoppiceABI
import Coppice
import Foundation

final class ModelHandle {
  let model: Model
  /// Set when coppice_train* ended in divergence: the weights are then not a trained model
  /// (they may be ~1e28 or NaN), so save and export refuse until a load or a finished training.
  var diverged: String?
  init(model: Model) { self.model = model }

  /// The model, for writing it to a file: refused after a divergence.
  func modelToWrite(_ call: String) throws -> Model {
    if let diverged {
      throw APIError(
        .invalidState,
        "the model diverged in training (\(diverged)); its weights are not a trained model. "
          + "Load a checkpoint (coppice_model_load) or train again before \(call)")
    }
    return model
  }
}

final class DatasetHandle {
  let dataset: Dataset
  init(dataset: Dataset) { self.dataset = dataset }
}

@_cdecl("coppice_model_create")
public func cModelCreate(
  _ name: UnsafePointer<CChar>?, _ seed: UInt64, _ classes: Int32,
  _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
  guarded("coppice_model_create") {
    let out = try output(out, "out")
    out.pointee = nil
    let n = try string(name, "name")
    guard let kind = ReferenceModel(rawValue: n) else {
      throw APIError(.notFound, "unknown model '\(n)' (mlp, cnn, resnet20)")
    }
    guard classes >= 2, classes <= 100_000 else {
      throw APIError(.invalidArgument, "classes must be in 2...100000, got \(classes)")
    }
    out.pointee = Handles.register(
      ModelHandle(model: kind.build(seed: seed, classes: Int(classes))))
  }
}

@_cdecl("coppice_model_destroy")
public func cModelDestroy(_ handle: OpaquePointer?) {
  Handles.destroy(handle, as: ModelHandle.self)
}

@_cdecl("coppice_model_parameter_count")
public func cModelParameterCount(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<Int64>?)
  -> Int32
{
  guarded("coppice_model_parameter_count") {
    let h = try Handles.resolve(handle, as: ModelHandle.self, what: "model")
    try output(out, "out").pointee = Int64(h.model.parameterCount)
  }
}

@_cdecl("coppice_model_shape")
public func cModelShape(
  _ handle: OpaquePointer?, _ classes: UnsafeMutablePointer<Int32>?,
  _ height: UnsafeMutablePointer<Int32>?, _ width: UnsafeMutablePointer<Int32>?
) -> Int32 {
  guarded("coppice_model_shape") {
    let m = try Handles.resolve(handle, as: ModelHandle.self, what: "model").model
    classes?.pointee = Int32(m.numberOfClasses)
    height?.pointee = Int32(m.inputShape[1])
    width?.pointee = Int32(m.inputShape[2])
  }
}

@_cdecl("coppice_model_save")
public func cModelSave(_ handle: OpaquePointer?, _ path: UnsafePointer<CChar>?) -> Int32 {
  guarded("coppice_model_save") {
    let m = try Handles.resolve(handle, as: ModelHandle.self, what: "model").modelToWrite(
      "saving")
    try m.save(path: try string(path, "path"))
  }
}

@_cdecl("coppice_model_load")
public func cModelLoad(_ handle: OpaquePointer?, _ path: UnsafePointer<CChar>?) -> Int32 {
  guarded("coppice_model_load") {
    let h = try Handles.resolve(handle, as: ModelHandle.self, what: "model")
    try h.model.load(path: try string(path, "path"))
    h.diverged = nil
  }
}

@_cdecl("coppice_dataset_create")
public func cDatasetCreate(
  _ images: UnsafePointer<Float>?, _ labels: UnsafePointer<Int32>?, _ count: Int64,
  _ height: Int32, _ width: Int32, _ classes: Int32, _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
  guarded("coppice_dataset_create") {
    let out = try output(out, "out")
    out.pointee = nil
    guard let images else { throw APIError(.invalidArgument, "images is NULL") }
    guard let labels else { throw APIError(.invalidArgument, "labels is NULL") }
    guard height >= 1, width >= 1, height <= 4096, width <= 4096 else {
      throw APIError(.invalidArgument, "height and width must be in 1...4096")
    }
    let size = Int64(height) * Int64(width)
    let (values, overflow) = count.multipliedReportingOverflow(by: size)
    guard count >= 1, !overflow, values < 1 << 32 else {
      throw APIError(.invalidArgument, "count must be >= 1 and count·height·width < 2^32")
    }
    let n = Int(count)
    let pixels = Array(UnsafeBufferPointer(start: images, count: n * Int(size)))
    let y = Array(UnsafeBufferPointer(start: labels, count: n))
    out.pointee = Handles.register(
      DatasetHandle(
        dataset: try Dataset(
          images: pixels, labels: y, sampleShape: [1, Int(height), Int(width)],
          classes: Int(classes))))
  }
}

@_cdecl("coppice_dataset_load_idx")
public func cDatasetLoadIDX(
  _ directory: UnsafePointer<CChar>?, _ split: UnsafePointer<CChar>?, _ limit: Int64,
  _ out: UnsafeMutablePointer<OpaquePointer?>?
) -> Int32 {
  guarded("coppice_dataset_load_idx") {
    let out = try output(out, "out")
    out.pointee = nil
    let dir = try optionalString(directory, "directory") ?? FashionMNIST.defaultDirectory
    let s = try string(split, "split")
    guard s == "train" || s == "t10k" else {
      throw APIError(.invalidArgument, "split must be \"train\" or \"t10k\", got \"\(s)\"")
    }
    let data = try FashionMNIST.load(
      directory: dir, split: s, limit: limit > 0 ? Int(min(limit, Int64(Int32.max))) : nil)
    out.pointee = Handles.register(DatasetHandle(dataset: data))
  }
}

@_cdecl("coppice_dataset_destroy")
public func cDatasetDestroy(_ handle: OpaquePointer?) {
  Handles.destroy(handle, as: DatasetHandle.self)
}

@_cdecl("coppice_dataset_count")
public func cDatasetCount(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<Int64>?) -> Int32 {
  guarded("coppice_dataset_count") {
    let h = try Handles.resolve(handle, as: DatasetHandle.self, what: "dataset")
    try output(out, "out").pointee = Int64(h.dataset.count)
  }
}

/// The C view of `TrainingConfig()`'s defaults (the ones every front end reports), with the
/// dense method for the sparse-training part.
func defaultTrainConfig() -> coppice_train_config {
  let d = TrainingConfig()
  var c = coppice_train_config()
  c.struct_size = MemoryLayout<coppice_train_config>.size
  c.epochs = Int32(d.epochs)
  c.batch_size = Int32(d.batchSize)
  c.learning_rate = d.learningRate
  c.optimizer = DefaultStrings.sgd
  c.momentum = d.momentum
  c.weight_decay = d.weightDecay
  c.lr_schedule = DefaultStrings.cosine
  c.seed = d.seed
  c.sparsity = defaultSparsifierConfig()
  c.sparsity.method = DefaultStrings.dense
  c.sparsity.total_steps = 1
  c.on_epoch = nil
  c.user_data = nil
  return c
}

@_cdecl("coppice_train_config_init")
public func cTrainConfigInit(_ config: UnsafeMutablePointer<coppice_train_config>?) {
  config?.pointee = defaultTrainConfig()
}

@_cdecl("coppice_train")
public func cTrain(
  _ model: OpaquePointer?, _ train: OpaquePointer?, _ test: OpaquePointer?,
  _ config: UnsafePointer<coppice_train_config>?,
  _ result: UnsafeMutablePointer<coppice_train_result>?
) -> Int32 {
  guarded("coppice_train") {
    try trainEngine(model, train, test, config, checkpoints: nil, result)
  }
}

func defaultCheckpointConfig() -> coppice_checkpoint_config {
  var c = coppice_checkpoint_config()
  c.struct_size = MemoryLayout<coppice_checkpoint_config>.size
  c.directory = nil
  c.every_epochs = 1
  c.keep = 3
  c.resume = 0
  return c
}

@_cdecl("coppice_checkpoint_config_init")
public func cCheckpointConfigInit(_ config: UnsafeMutablePointer<coppice_checkpoint_config>?) {
  config?.pointee = defaultCheckpointConfig()
}

@_cdecl("coppice_train_checkpointed")
public func cTrainCheckpointed(
  _ model: OpaquePointer?, _ train: OpaquePointer?, _ test: OpaquePointer?,
  _ config: UnsafePointer<coppice_train_config>?,
  _ checkpoints: UnsafePointer<coppice_checkpoint_config>?,
  _ result: UnsafeMutablePointer<coppice_train_result>?
) -> Int32 {
  guarded("coppice_train_checkpointed") {
    let c = try readConfig(checkpoints, defaults: defaultCheckpointConfig(), what: "checkpoints")
    let directory = try string(c.directory, "checkpoints.directory")
    guard !directory.isEmpty else {
      throw APIError(.invalidArgument, "checkpoints.directory is empty")
    }
    guard c.every_epochs >= 1 else {
      throw APIError(
        .invalidArgument, "checkpoints.every_epochs must be >= 1, got \(c.every_epochs)")
    }
    guard c.keep >= 1 else {
      throw APIError(.invalidArgument, "checkpoints.keep must be >= 1, got \(c.keep)")
    }
    let store = try CheckpointDirectory(
      path: directory, keep: Int(c.keep), every: Int(c.every_epochs))
    try trainEngine(model, train, test, config, checkpoints: (store, c.resume != 0), result)
  }
}

/// coppice_train and coppice_train_checkpointed.
private func trainEngine(
  _ model: OpaquePointer?, _ train: OpaquePointer?, _ test: OpaquePointer?,
  _ config: UnsafePointer<coppice_train_config>?,
  checkpoints: (store: CheckpointDirectory, resume: Bool)?,
  _ result: UnsafeMutablePointer<coppice_train_result>?
) throws {
  let handle = try Handles.resolve(model, as: ModelHandle.self, what: "model")
  let m = handle.model
  let trainData = try Handles.resolve(train, as: DatasetHandle.self, what: "train").dataset
  let testData = try Handles.resolve(test, as: DatasetHandle.self, what: "test").dataset
  let c = try readConfig(config, defaults: defaultTrainConfig(), what: "config")
  guard trainData.sampleShape == m.inputShape, testData.sampleShape == m.inputShape else {
    throw APIError(
      .shapeMismatch,
      "data samples \(trainData.sampleShape) do not match the model's input \(m.inputShape)")
  }
  guard trainData.classes <= m.numberOfClasses, testData.classes <= m.numberOfClasses else {
    throw APIError(.shapeMismatch, "data has more classes than the model's outputs")
  }
  var t = TrainingConfig()
  guard c.epochs >= 1, c.epochs <= TrainingConfig.maxEpochs else {
    throw APIError(
      .invalidArgument, "epochs must be in 1...\(TrainingConfig.maxEpochs), got \(c.epochs)")
  }
  t.epochs = Int(c.epochs)
  t.batchSize = Int(c.batch_size)
  t.learningRate = c.learning_rate
  let opt = c.optimizer.map { String(cString: $0) } ?? "sgd"
  guard let kind = OptimizerKind(rawValue: opt) else {
    throw APIError(.invalidArgument, "unknown optimizer '\(opt)' (sgd, adamw)")
  }
  t.optimizer = kind
  t.momentum = c.momentum
  t.weightDecay = c.weight_decay
  switch c.lr_schedule.map({ String(cString: $0) }) ?? "cosine" {
  case "cosine": t.schedule = .cosine(minimum: 0)
  case "constant": t.schedule = .constant
  case let other:
    throw APIError(.invalidArgument, "unknown lr_schedule '\(other)' (cosine, constant)")
  }
  t.seed = c.seed
  t.warmupEpochs = Int(c.sparsity.warmup_epochs)
  try t.validate()
  let stepsPerEpoch = (trainData.count + t.batchSize - 1) / t.batchSize
  var sc = c.sparsity
  sc.struct_size = MemoryLayout<coppice_sparsifier_config>.size
  if sc.gap_step_length == 0 { sc.gap_step_length = Int64(stepsPerEpoch) }
  let methodName = sc.method.map { String(cString: $0) } ?? "dense"
  sc.method = nil
  var sparsity: SparsityConfig?
  if methodName != "dense" {
    sparsity = try methodName.withCString { name -> SparsityConfig in
      sc.method = name
      return try sparsityConfig(sc)
    }
  }
  let run = try TrainingRun(
    model: m, config: t, sparsity: sparsity, trainCount: trainData.count,
    checkpoints: checkpoints.map {
      .init(directory: $0.store, resume: $0.resume, stopOnSaveFailure: true)
    })
  let trainer = run.trainer
  let callback = c.on_epoch
  let user = c.user_data
  defer { handle.diverged = run.divergence }
  _ = try run.run(
    train: trainData, test: testData,
    onEvent: { event in
      switch event {
      case .sparsity(let line): Log.emit(1, line)
      case .resumed(let file): Log.emit(1, "resumed from \(file) at step \(trainer.stepsTaken)")
      case .warning(let message): Log.emit(2, message)
      case .epoch(let r):
        if let callback,
          callback(Int32(r.epoch), r.loss, r.testAccuracy, r.sparsity, r.seconds, user) != 0
        {
          run.requestStop()
        }
      case .nothingToResume, .batch, .checkpointSaved, .checkpointFailed: break
      }
    })
  if let result {
    result.pointee.test_accuracy = trainer.history.last?.testAccuracy ?? 0
    result.pointee.sparsity = trainer.sparsifier?.report.sparsity ?? 0
    result.pointee.train_seconds = trainer.trainSeconds
    result.pointee.epochs = Int32(trainer.history.count)
  }
}

@_cdecl("coppice_evaluate")
public func cEvaluate(
  _ model: OpaquePointer?, _ data: OpaquePointer?, _ accuracy: UnsafeMutablePointer<Double>?
) -> Int32 {
  guarded("coppice_evaluate") {
    let m = try Handles.resolve(model, as: ModelHandle.self, what: "model").model
    let d = try Handles.resolve(data, as: DatasetHandle.self, what: "data").dataset
    let out = try output(accuracy, "accuracy")
    guard d.sampleShape == m.inputShape else {
      throw APIError(.shapeMismatch, "data samples \(d.sampleShape) ≠ model input \(m.inputShape)")
    }
    out.pointee = Trainer.evaluate(model: m, on: d).accuracy
  }
}

@_cdecl("coppice_predict")
public func cPredict(
  _ model: OpaquePointer?, _ images: UnsafePointer<Float>?, _ count: Int64, _ height: Int32,
  _ width: Int32, _ logits: UnsafeMutablePointer<Float>?, _ logitsCount: Int64
) -> Int32 {
  guarded("coppice_predict") {
    let m = try Handles.resolve(model, as: ModelHandle.self, what: "model").model
    guard let images else { throw APIError(.invalidArgument, "images is NULL") }
    let out = try output(logits, "logits")
    guard [1, Int(height), Int(width)] == m.inputShape else {
      throw APIError(
        .shapeMismatch, "images are \(height)×\(width), the model takes \(m.inputShape)")
    }
    guard count >= 1, count <= 1 << 24 else {
      throw APIError(.invalidArgument, "count must be in 1...2^24, got \(count)")
    }
    let classes = m.numberOfClasses
    guard logitsCount == count * Int64(classes) else {
      throw APIError(
        .shapeMismatch,
        "logits holds \(logitsCount) floats; \(count) images need \(count * Int64(classes))")
    }
    let size = Int(height) * Int(width)
    // NaN or infinite pixels would come out as logits of exactly 0, as if valid.
    if let bad = UnsafeBufferPointer(start: images, count: Int(count) * size).firstIndex(
      where: { !$0.isFinite })
    {
      throw APIError(
        .invalidArgument, "image \(bad / size) holds NaN or infinity (at pixel \(bad % size))")
    }
    let batch = 256
    var start = 0
    while start < Int(count) {
      let n = min(batch, Int(count) - start)
      let x = Tensor(shape: [n, 1, Int(height), Int(width)])
      x.data.update(from: images + start * size, count: n * size)
      let y = m.forward(x, training: false)
      (out + start * classes).update(from: y.data, count: n * classes)
      start += n
    }
  }
}

@_cdecl("coppice_model_export")
public func cModelExport(
  _ handle: OpaquePointer?, _ path: UnsafePointer<CChar>?, _ bytes: UnsafeMutablePointer<Int64>?,
  _ denseBytes: UnsafeMutablePointer<Int64>?
) -> Int32 {
  guarded("coppice_model_export") {
    let m = try Handles.resolve(handle, as: ModelHandle.self, what: "model").modelToWrite(
      "exporting")
    let summary = try SparseExport.write(m, to: try string(path, "path"))
    bytes?.pointee = Int64(summary.bytes)
    denseBytes?.pointee = Int64(summary.denseBytes)
  }
}

@_cdecl("coppice_file_inspect")
public func cFileInspect(
  _ path: UnsafePointer<CChar>?, _ json: UnsafeMutablePointer<CChar>?, _ capacity: Int,
  _ needed: UnsafeMutablePointer<Int>?
) -> Int32 {
  guarded("coppice_file_inspect") {
    let info = try FileInspection(path: try string(path, "path"))
    let text = [UInt8](try info.json()) + [0]
    needed?.pointee = text.count
    let room = UInt(bitPattern: capacity)  // a size_t: SIZE_MAX is "large", not -1
    guard room >= UInt(text.count) else {
      throw APIError(
        .shapeMismatch, "the JSON needs \(text.count) bytes, the buffer holds \(room)")
    }
    guard let json else { throw APIError(.invalidArgument, "json is NULL") }
    text.withUnsafeBufferPointer {
      UnsafeMutableRawPointer(json).copyMemory(from: $0.baseAddress!, byteCount: text.count)
    }
  }
}
