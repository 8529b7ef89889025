// coppice_sparsifier_pgap_*: P-GaP for hosts that run the workers and move the data
// themselves (their own MPI, torch.distributed, files).
import CCoppiceABI
import Coppice
import Foundation

extension SparsifierHandle {
  /// The started sparsifier and its P-GaP schedule (INVALID_STATE for another method).
  func parallelGaP() throws -> (Sparsifier, ParallelGaP) {
    let s = try started()
    guard let gap = s.parallelGaP else {
      throw APIError(.invalidState, "P-GaP calls need method pgap, not \(s.config.method.rawValue)")
    }
    return (s, gap)
  }

  /// Checks a host buffer of `count` weights against partition `worker`'s size.
  func checkPartitionBuffer(_ worker: Int32, count: Int64) throws -> Sparsifier {
    let (s, _) = try parallelGaP()
    let size = try s.partitionSize(ofWorker: Int(worker))
    guard count == Int64(size) else {
      throw APIError(
        .shapeMismatch, "partition \(worker) holds \(size) weights, the buffer \(count)")
    }
    return s
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
    for e in s.lastEvents { Log.emit(1, e) }
  }
}

@_cdecl("coppice_sparsifier_pgap_partition_size")
public func cPGaPPartitionSize(
  _ handle: OpaquePointer?, _ worker: Int32, _ count: UnsafeMutablePointer<Int64>?
) -> Int32 {
  guarded("coppice_sparsifier_pgap_partition_size") {
    let h = try Handles.resolve(handle, as: SparsifierHandle.self, what: "sparsifier")
    let (s, _) = try h.parallelGaP()
    try output(count, "count").pointee = Int64(try s.partitionSize(ofWorker: Int(worker)))
  }
}

@_cdecl("coppice_sparsifier_pgap_export_partition")
public func cPGaPExportPartition(
  _ handle: OpaquePointer?, _ worker: Int32, _ weights: UnsafeMutablePointer<Float>?,
  _ masks: UnsafeMutablePointer<UInt8>?, _ count: Int64
) -> Int32 {
  guarded("coppice_sparsifier_pgap_export_partition") {
    let h = try Handles.resolve(handle, as: SparsifierHandle.self, what: "sparsifier")
    let s = try h.checkPartitionBuffer(worker, count: count)
    try s.exportPartition(
      ofWorker: Int(worker), weights: try output(weights, "weights"), masks: masks)
  }
}

@_cdecl("coppice_sparsifier_pgap_import_partition")
public func cPGaPImportPartition(
  _ handle: OpaquePointer?, _ worker: Int32, _ weights: UnsafePointer<Float>?, _ count: Int64
) -> Int32 {
  guarded("coppice_sparsifier_pgap_import_partition") {
    let h = try Handles.resolve(handle, as: SparsifierHandle.self, what: "sparsifier")
    let s = try h.checkPartitionBuffer(worker, count: count)
    guard let weights else { throw APIError(.invalidArgument, "weights is NULL") }
    try s.importPartition(ofWorker: Int(worker), weights: weights)
  }
}

@_cdecl("coppice_sparsifier_pgap_finish_round")
public func cPGaPFinishRound(_ handle: OpaquePointer?) -> Int32 {
  guarded("coppice_sparsifier_pgap_finish_round") {
    let h = try Handles.resolve(handle, as: SparsifierHandle.self, what: "sparsifier")
    let (s, _) = try h.parallelGaP()
    try s.finishParallelRoundFromImports()
    for e in s.lastEvents { Log.emit(1, e) }
  }
}
