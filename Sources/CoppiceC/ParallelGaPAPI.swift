// coppice_sparsifier_pgap_*: P-GaP for hosts that run the workers and move the data
// themselves (their own MPI, torch.distributed, files).
import CCoppiceABI
import Coppice
import Foundation

extension SparsifierHandle {
  func parallelGaP() throws -> (Sparsifier, ParallelGaP) {
    let s = try started()
    guard let gap = s.parallelGaP else {
      throw APIError(.invalidState, "P-GaP calls need method pgap, not \(s.config.method.rawValue)")
    }
    return (s, gap)
  }

  /// The targets of partition `worker`, validated.
  func partition(_ worker: Int32) throws -> [Int] {
    let (_, gap) = try parallelGaP()
    guard worker >= 0, Int(worker) < gap.workerCount else {
      throw APIError(.invalidArgument, "worker \(worker) out of range 0..<\(gap.workerCount)")
    }
    return gap.partitions[Int(worker)]
  }

  func partitionSize(_ worker: Int32) throws -> Int { size(of: try partition(worker)) }

  private func size(of partition: [Int]) -> Int { partition.reduce(0) { $0 + targets[$1].count } }

  /// The targets of partition `worker`, checked against a host buffer of `count` weights.
  func partition(_ worker: Int32, count: Int64) throws -> [Int] {
    let p = try partition(worker)
    let size = size(of: p)
    guard count == Int64(size) else {
      throw APIError(
        .shapeMismatch, "partition \(worker) holds \(size) weights, the buffer \(count)")
    }
    return p
  }
}

@_cdecl("coppice_sparsifier_pgap_status")
public func cPGaPStatus(
  _ handle: OpaquePointer?, _ workers: UnsafeMutablePointer<Int32>?,
  _ roundsCompleted: UnsafeMutablePointer<Int32>?, _ rounds: UnsafeMutablePointer<Int32>?
) -> Int32 {
  guarded("coppice_sparsifier_pgap_status") {
    let h = try Handles.resolve(handle, as: SparsifierHandle.self, what: "sparsifier")
    let (_, gap) = try h.parallelGaP()
    workers?.pointee = Int32(gap.workerCount)
    roundsCompleted?.pointee = Int32(gap.roundsCompleted)
    rounds?.pointee = Int32(gap.rounds)
  }
}

@_cdecl("coppice_sparsifier_pgap_begin_worker")
public func cPGaPBeginWorker(_ handle: OpaquePointer?, _ worker: Int32) -> Int32 {
  guarded("coppice_sparsifier_pgap_begin_worker") {
    let h = try Handles.resolve(handle, as: SparsifierHandle.self, what: "sparsifier")
    let (s, _) = try h.parallelGaP()
    try s.beginParallelWorker(Int(worker))  // checks the worker's range
    h.importedPartitions = [:]
    for e in s.lastEvents { Log.emit(1, e) }
  }
}

@_cdecl("coppice_sparsifier_pgap_partition_size")
public func cPGaPPartitionSize(
  _ handle: OpaquePointer?, _ worker: Int32, _ count: UnsafeMutablePointer<Int64>?
) -> Int32 {
  guarded("coppice_sparsifier_pgap_partition_size") {
    let h = try Handles.resolve(handle, as: SparsifierHandle.self, what: "sparsifier")
    try output(count, "count").pointee = Int64(try h.partitionSize(worker))
  }
}

@_cdecl("coppice_sparsifier_pgap_export_partition")
public func cPGaPExportPartition(
  _ handle: OpaquePointer?, _ worker: Int32, _ weights: UnsafeMutablePointer<Float>?,
  _ masks: UnsafeMutablePointer<UInt8>?, _ count: Int64
) -> Int32 {
  guarded("coppice_sparsifier_pgap_export_partition") {
    let h = try Handles.resolve(handle, as: SparsifierHandle.self, what: "sparsifier")
    let partition = try h.partition(worker, count: count)
    let out = try output(weights, "weights")
    var offset = 0
    for t in partition {
      let target = h.targets[t]
      (out + offset).update(from: target.weights, count: target.count)
      if let masks {
        target.mask.withUnsafeBufferPointer {
          (masks + offset).update(from: $0.baseAddress!, count: target.count)
        }
      }
      offset += target.count
    }
  }
}

@_cdecl("coppice_sparsifier_pgap_import_partition")
public func cPGaPImportPartition(
  _ handle: OpaquePointer?, _ worker: Int32, _ weights: UnsafePointer<Float>?, _ count: Int64
) -> Int32 {
  guarded("coppice_sparsifier_pgap_import_partition") {
    let h = try Handles.resolve(handle, as: SparsifierHandle.self, what: "sparsifier")
    let partition = try h.partition(worker, count: count)
    guard let weights else { throw APIError(.invalidArgument, "weights is NULL") }
    var values: [Int: [Float]] = [:]
    var offset = 0
    for t in partition {
      let n = h.targets[t].count
      let part = Array(UnsafeBufferPointer(start: weights + offset, count: n))
      guard part.allSatisfy(\.isFinite) else {
        throw APIError(.invalidArgument, "partition \(worker) holds NaN or infinity")
      }
      values[t] = part
      offset += n
    }
    h.importedPartitions[Int(worker)] = values
  }
}

@_cdecl("coppice_sparsifier_pgap_finish_round")
public func cPGaPFinishRound(_ handle: OpaquePointer?) -> Int32 {
  guarded("coppice_sparsifier_pgap_finish_round") {
    let h = try Handles.resolve(handle, as: SparsifierHandle.self, what: "sparsifier")
    let (s, gap) = try h.parallelGaP()
    var workerWeights: [[[Float]]] = []
    for worker in 0..<gap.workerCount {
      var weights = [[Float]](repeating: [], count: h.targets.count)
      for t in gap.partitions[worker] {
        if let imported = h.importedPartitions[worker]?[t] {
          weights[t] = imported
        } else if gap.currentWorker == worker {
          let target = h.targets[t]
          weights[t] = Array(UnsafeBufferPointer(start: target.weights, count: target.count))
        } else {
          throw APIError(
            .invalidState,
            "partition \(worker) was not imported (coppice_sparsifier_pgap_import_partition) "
              + "before finishing the round")
        }
      }
      workerWeights.append(weights)
    }
    try s.finishParallelRound(workerWeights: workerWeights)
    h.importedPartitions = [:]
    for e in s.lastEvents { Log.emit(1, e) }
  }
}
