// coppice_sparsifier_*: partition lists, per-layer sparsities, blocks, and the queries of a
// started sparsifier (partitions, frozen masks, restarts, structured events).
import CCoppiceABI
import Coppice
import Foundation

extension SparsifierHandle {
  /// The handle, checked not yet started (for the set_* calls).
  static func unstarted(_ handle: OpaquePointer?, _ what: String) throws -> SparsifierHandle {
    let h = try Handles.resolve(handle, as: SparsifierHandle.self, what: "sparsifier")
    guard h.sparsifier == nil else {
      throw APIError(.invalidState, "\(what) must be set before coppice_sparsifier_start")
    }
    return h
  }
}

@_cdecl("coppice_sparsifier_set_partition_list")
public func cSparsifierSetPartitionList(_ handle: OpaquePointer?, _ text: UnsafePointer<CChar>?)
  -> Int32
{
  guarded("coppice_sparsifier_set_partition_list") {
    let h = try SparsifierHandle.unstarted(handle, "partitions")
    let lists = Partitioning.parseList(try string(text, "partitions"))
    guard lists.count <= SparsityConfig.maxPartitions else {
      throw APIError(
        .invalidArgument, "at most \(SparsityConfig.maxPartitions) partitions, got \(lists.count)")
    }
    var assigned: [String: Int] = [:]
    for (p, list) in lists.enumerated() {
      guard !list.isEmpty else { throw APIError(.invalidArgument, "partition \(p) is empty") }
      for name in list {
        guard h.targets.contains(where: { $0.name == name }) else {
          throw APIError(.notFound, "no parameter named '\(name)' (partition \(p))")
        }
        if let other = assigned[name] {
          throw APIError(
            .invalidArgument, "'\(name)' is in partition \(other) and partition \(p)")
        }
        assigned[name] = p
      }
    }
    h.assignedPartitions = assigned
  }
}

@_cdecl("coppice_sparsifier_set_layer_sparsity")
public func cSparsifierSetLayerSparsity(
  _ handle: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ sparsity: Double
) -> Int32 {
  guarded("coppice_sparsifier_set_layer_sparsity") {
    let h = try SparsifierHandle.unstarted(handle, "layer sparsities")
    let n = try h.target(named: name).name
    guard sparsity.isFinite, sparsity >= 0, sparsity < 1 else {
      throw APIError(.invalidArgument, "sparsity of '\(n)' must be in [0, 1), got \(sparsity)")
    }
    h.layerSparsities[n] = sparsity
  }
}

@_cdecl("coppice_sparsifier_set_block")
public func cSparsifierSetBlock(
  _ handle: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ block: UnsafePointer<CChar>?
) -> Int32 {
  guarded("coppice_sparsifier_set_block") {
    let h = try SparsifierHandle.unstarted(handle, "blocks")
    let t = try h.target(named: name)
    let b = try string(block, "block")
    guard !b.isEmpty else { throw APIError(.invalidArgument, "block of '\(t.name)' is empty") }
    t.block = b
  }
}

@_cdecl("coppice_sparsifier_partition_count")
public func cSparsifierPartitionCount(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<Int32>?)
  -> Int32
{
  guarded("coppice_sparsifier_partition_count") {
    let h = try Handles.resolve(handle, as: SparsifierHandle.self, what: "sparsifier")
    let out = try output(out, "out")
    out.pointee = Int32(try h.started().partitions.count)
  }
}

@_cdecl("coppice_sparsifier_partition_of")
public func cSparsifierPartitionOf(
  _ handle: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<Int32>?
) -> Int32 {
  guarded("coppice_sparsifier_partition_of") {
    let h = try Handles.resolve(handle, as: SparsifierHandle.self, what: "sparsifier")
    let s = try h.started()
    let t = try h.target(named: name)
    let out = try output(out, "out")
    let index = h.targets.firstIndex { $0 === t }!
    out.pointee = Int32(s.partition(ofTarget: index) ?? -1)
  }
}

/// One yes/no query of a started sparsifier.
private func flag(
  _ function: String, _ handle: OpaquePointer?, _ out: UnsafeMutablePointer<Int32>?,
  _ value: (Sparsifier) -> Bool
) -> Int32 {
  guarded(function) {
    let h = try Handles.resolve(handle, as: SparsifierHandle.self, what: "sparsifier")
    let out = try output(out, "out")
    out.pointee = value(try h.started()) ? 1 : 0
  }
}

@_cdecl("coppice_sparsifier_masks_frozen")
public func cSparsifierMasksFrozen(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<Int32>?)
  -> Int32
{
  flag("coppice_sparsifier_masks_frozen", handle, out) { $0.masksFrozen }
}

@_cdecl("coppice_sparsifier_skips_optimizer_step")
public func cSparsifierSkipsOptimizerStep(
  _ handle: OpaquePointer?, _ out: UnsafeMutablePointer<Int32>?
) -> Int32 {
  flag("coppice_sparsifier_skips_optimizer_step", handle, out) { $0.skipsOptimizerStep }
}

@_cdecl("coppice_sparsifier_ended_gap_step")
public func cSparsifierEndedGaPStep(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<Int32>?)
  -> Int32
{
  flag("coppice_sparsifier_ended_gap_step", handle, out) { $0.endedGaPStep }
}

@_cdecl("coppice_sparsifier_next_event")
public func cSparsifierNextEvent(
  _ handle: OpaquePointer?, _ event: UnsafeMutablePointer<coppice_sparsifier_event>?,
  _ hasEvent: UnsafeMutablePointer<Int32>?
) -> Int32 {
  guarded("coppice_sparsifier_next_event") {
    let h = try Handles.resolve(handle, as: SparsifierHandle.self, what: "sparsifier")
    let event = try output(event, "event")
    let hasEvent = try output(hasEvent, "has_event")
    hasEvent.pointee = 0
    let size = MemoryLayout<coppice_sparsifier_event>.size
    guard event.pointee.struct_size >= size else {
      throw APIError(
        .invalidArgument,
        "event.struct_size is \(event.pointee.struct_size), expected \(size) "
          + "(set it to sizeof(coppice_sparsifier_event))")
    }
    let s = try h.started()
    guard let next = s.events(since: h.eventsRead).first else { return }
    h.eventsRead += 1
    free(h.eventLayers)
    h.eventLayers = strdup(next.layers.joined(separator: ","))
    var e = coppice_sparsifier_event()
    e.struct_size = size
    e.kind = next.kind.rawValue
    e.partition = Int32(next.partition ?? -1)
    e.step = Int64(next.step)
    e.sparsity = next.sparsity
    e.layer_count = Int32(next.layers.count)
    e.kind_name = DefaultStrings.eventKinds[next.kind.rawValue]
    e.layers = UnsafePointer(h.eventLayers)
    event.pointee = e
    hasEvent.pointee = 1
  }
}
